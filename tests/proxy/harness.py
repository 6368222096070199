"""A sans-IO harness for the proxy core: a Proxy, a virtual timer table, message builders."""

from __future__ import annotations

import fastsip

from proxyapp.config import Config
from proxyapp.proxy import Proxy, Target
from proxyapp.transaction import CancelTimer, Send, StartTimer, Terminated

from .seed import PROXY_IP

LISTEN = f"udp:{PROXY_IP}:5060"
CALLER = ("10.0.0.1", 5062)
CALLEE = ("10.0.0.2", 5070)


class Harness:
    """A Proxy plus a fake timer table: StartTimer arms, CancelTimer/Terminated disarm, fire() runs."""

    def __init__(self, script=None, location=None, **cfg):
        data = {"listen": [LISTEN, f"tcp:{PROXY_IP}:5060"], "server_header": "OpenSIPS (2.2.7 (x86_64/linux))"}
        data.update(cfg)
        self.cfg = Config.from_dict(data)
        self.proxy = Proxy(self.cfg, script, branch_salt="abc", wallclock=lambda: 1000.0, location=location)
        self.armed: dict[tuple[int, str], tuple] = {}  # -> (tx, name, deadline on a virtual clock)
        self.now = 0.0
        self.udp = self.cfg.listen[0]

    def _track(self, actions):
        for a in actions:
            if isinstance(a, StartTimer):
                self.armed[(id(a.tx), a.name)] = (a.tx, a.name, self.now + a.delay)
            elif isinstance(a, CancelTimer):
                self.armed.pop((id(a.tx), a.name), None)
            elif isinstance(a, Terminated):
                for k in [k for k in self.armed if k[0] == id(a.tx)]:
                    del self.armed[k]
        return actions

    def rx(self, data, src=CALLER, transport="udp"):
        if isinstance(data, str):
            data = data.encode()
        return self._track(self.proxy.receive(data, Target(transport, src[0], src[1], None, self.udp)))

    def fire(self, tx, name):
        assert (id(tx), name) in self.armed, f"timer {name} of {tx!r} is not armed"
        del self.armed[(id(tx), name)]
        return self._track(self.proxy.timer_fired(tx, name))

    def fire_named(self, name):
        """Fire the one armed timer called ``name``."""
        found = [(tx, n) for (tx, n, _) in self.armed.values() if n == name]
        assert len(found) == 1, (name, found)
        return self.fire(*found[0])

    def drain(self):
        """Fire every armed timer in deadline order (virtual time) until none is left (bounded)."""
        out = []
        for _ in range(10000):
            if not self.armed:
                return out
            tx, name, when = min(self.armed.values(), key=lambda t: t[2])
            self.now = when
            out += self.fire(tx, name)
        raise AssertionError("timers never stopped")


def sends(actions):
    return [a for a in actions if isinstance(a, Send)]


def timers(actions):
    return [(type(a).__name__, a.name) for a in actions if isinstance(a, (StartTimer, CancelTimer))]


def req(method="INVITE", ruri=f"sip:bob@{CALLEE[0]}:{CALLEE[1]}", branch="z9hG4bKc1", cseq=1, extra="", to_tag=None,
        max_forwards="70", via_host=f"{CALLER[0]}:{CALLER[1]}", body=""):
    to = f"<sip:bob@{CALLEE[0]}>" + (f";tag={to_tag}" if to_tag else "")
    mf = f"Max-Forwards: {max_forwards}\r\n" if max_forwards is not None else ""
    return (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host};branch={branch}\r\n"
        f"{mf}"
        f"From: <sip:alice@{CALLER[0]}>;tag=a1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: call-1@test\r\n"
        f"CSeq: {cseq} {method if method not in ('ACK', 'CANCEL') else method}\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def resp_for(forwarded: bytes, status: int, reason: str, to_tag="b1", extra=""):
    """The callee's response to a forwarded request: all its Vias, its To with a tag."""
    msg = fastsip.parse(forwarded)
    r = fastsip.make_response(msg, status, reason, to_tag=to_tag if status > 100 else None)
    data = bytes(r)
    if extra:
        data = data.replace(b"Content-Length", extra.encode() + b"Content-Length", 1)
    return data


def branch_of(data: bytes) -> str:
    return fastsip.parse(data).via[0].branch


