"""A real softphone for the tests: baresip 1.0 run headless on loopback, driven over its ctrl_tcp socket.

Each Phone is one ``baresip -f DIR`` process with a private config directory in the test's temp
dir. It binds only 127.0.0.1 (SIP on a free port for UDP and TCP, ctrl_tcp on another), loads no
sound card, NAT or DNS-using module (the audio source is a sine generator, there is no player), and
every URI in its config is an IP literal, so nothing leaves the machine.

The ctrl_tcp module speaks netstring-framed JSON: commands ``{"command", "params", "token"}`` are
answered by ``{"response": true, "ok", "data", "token"}``; UA events arrive unasked as
``{"event": true, "type", "class", "param", "accountaor", "direction", "peeruri", "id"}``. The
command names are the menu module's (baresip 1.0: dial, accept, hangup, uanew, uadel, reginfo).
ctrl_tcp relays events only to a connected client, so the phone holds no UA until the harness is
connected: the account is created with ``uanew`` afterwards and no event is lost.

Every wait has a deadline; a failed wait raises AssertionError carrying the events seen and the
logs (of this phone and, through ``context``, of the other processes of the test).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

MODULES = Path("/usr/lib/baresip/modules")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # baresip colours its warnings and its SIP trace
_TRACE_MARK = re.compile(r"\x1b\[36;1m#\r?\n")  # what -s prints before each SIP message sent or received
LOG_TAIL = 6000


def baresip_path() -> str:
    """The baresip binary; fails the test (never skips it) with the package to install."""
    path = shutil.which("baresip")
    if path is None or not (MODULES / "ctrl_tcp.so").exists():
        raise AssertionError("baresip 1.0 is required for the phone tests: apt-get install baresip-core "
                             "(tests/run.sh installs it)")
    return path


def _bindable(port: int, kinds: tuple[int, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_sip_port(free_port: Callable[[], int]) -> int:
    """A port free for SIP over UDP and TCP whose successor is free on TCP too.

    baresip 1.0 also opens SIP over TLS on the sip_listen port + 1 and refuses to start when it
    cannot bind it.
    """
    for _ in range(50):
        port = free_port()
        if port < 65535 and _bindable(port + 1, (socket.SOCK_STREAM,)):
            return port
    raise RuntimeError("no free pair of ports on 127.0.0.1")


@dataclass
class Event:
    """One ctrl_tcp event (``raw`` keeps every field baresip sent)."""

    type: str
    param: str = ""
    direction: str = ""
    peeruri: str = ""
    call_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        extra = " ".join(x for x in (self.direction, self.peeruri) if x)
        return f"{self.type} {self.param!r}" + (f" ({extra})" if extra else "")


class Phone:
    """One baresip process: a user agent for ``sip:USER@DOMAIN``.

    proxy: "127.0.0.1:PORT" of a proxy that is both the registrar and the outbound proxy (a
    preloaded ``Route: <sip:127.0.0.1:PORT;lr>`` on the REGISTER and every call), or None for a
    phone that calls and is called directly and never registers.
    transport: "udp" or "tcp", for the account (REGISTER, calls to the AOR) and the outbound proxy.
    name: tells apart several phones of one user (one AOR, several devices); default the user.
    """

    def __init__(self, workdir: Path, user: str, *, free_port: Callable[[], int], transport: str = "udp",
                 proxy: str | None = None, domain: str = "127.0.0.1", regint: int = 600,
                 password: str | None = None, name: str | None = None,
                 context: Callable[[], str] | None = None) -> None:
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport {transport!r}: udp or tcp")
        self.user = user
        self.name = name or user
        self.transport = transport
        self.proxy = proxy
        self.domain = domain
        self.regint = regint
        self.password = password
        self.context = context
        self.dir = workdir / f"baresip-{self.name}"
        self.dir.mkdir(parents=True, exist_ok=False)
        self.log_path = self.dir / "baresip.log"
        self.sip_port = free_sip_port(free_port)
        self.ctrl_port = free_port()
        self.proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._consumed: set[int] = set()  # indexes of the events wait_event returned
        self._responses: dict[str, dict[str, Any]] = {}
        self._token = 0
        self._closed = False

    # ------------------------------------------------------------------ addresses

    @property
    def aor(self) -> str:
        """The address-of-record, as baresip names its UA: ``sip:user@domain``."""
        return f"sip:{self.user}@{self.domain}"

    @property
    def uri(self) -> str:
        """The phone's own address (where it listens), usable as a Request-URI."""
        tp = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}{tp}"

    def account_line(self, regint: int) -> str:
        """The accounts-file line (``uanew`` parameter) for this phone."""
        tp = ";transport=tcp" if self.transport == "tcp" else ""
        line = f"<sip:{self.user}@{self.domain}{tp}>;answermode=manual;audio_codecs=pcmu,pcma;regint={regint}"
        if self.proxy is not None:
            line += f';outbound="sip:{self.proxy}{tp}"'  # libre adds ;lr
        if self.password is not None:
            line += f";auth_pass={self.password}"
        return line

    def _config(self) -> str:
        return "\n".join([
            "poll_method\t\tepoll",
            f"sip_listen\t\t127.0.0.1:{self.sip_port}",
            # The local address (Via, Contact, SDP c=) is loopback's; no IPv6.
            "net_interface\t\t127.0.0.1",
            # Nothing here needs DNS (IP literals only); should anything ask, it asks loopback.
            "dns_server\t\t127.0.0.1:53",
            "call_local_timeout\t120",
            "call_max_calls\t\t4",
            # No sound card: a sine wave is the microphone and no player module is loaded.
            "audio_source\t\tausine,440",
            "ausrc_srate\t\t48000",  # ausine makes 48 kHz stereo only; baresip resamples
            "ausrc_channels\t\t2",
            "audio_buffer\t\t20-160",
            "rtp_stats\t\tno",
            "ringback_disabled\tyes",
            "statmode_default\toff",
            f"module_path\t\t{MODULES}",
            "module\t\t\tg711.so",
            "module\t\t\tausine.so",
            "module_app\t\tmenu.so",
            "module_app\t\tctrl_tcp.so",
            f"ctrl_tcp_listen\t\t127.0.0.1:{self.ctrl_port}",
            "",
        ])

    # ------------------------------------------------------------------ process

    def start(self, timeout: float = 10.0) -> "Phone":
        """Start baresip, connect to ctrl_tcp and create the UA (not registered yet)."""
        exe = baresip_path()
        (self.dir / "config").write_text(self._config())
        (self.dir / "accounts").write_text("")  # the UA is created over ctrl_tcp (see the module docstring)
        self._log = self.log_path.open("wb")
        # -4 IPv4 only, -s SIP trace and -v debug into the log; -t: the process ends on its own
        # even if a crashed test runner never stops it.
        self.proc = subprocess.Popen(
            [exe, "-4", "-s", "-v", "-t", "900", "-f", str(self.dir)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(self.dir),
            start_new_session=True,  # its own process group: stop() kills the group
        )
        deadline = time.monotonic() + timeout
        while b"baresip is ready" not in self.log_path.read_bytes():
            if self.proc.poll() is not None:
                self._fail(f"baresip exited with status {self.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                self._fail(f"baresip not ready within {timeout:.0f} s")
            time.sleep(0.05)
        while True:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    self._fail(f"ctrl_tcp 127.0.0.1:{self.ctrl_port} refused: {exc}")
                time.sleep(0.05)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name=f"ctrl-{self.name}", daemon=True)
        self._reader.start()
        self.command("uanew", self.account_line(0))
        return self

    def stop(self) -> None:
        """Kill the process group (SIGTERM, then SIGKILL after 3 s) and close the control socket."""
        self._closed = True
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        proc = self.proc
        if proc is not None and proc.poll() is None:
            for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._reader is not None:
            self._reader.join(2)
        if hasattr(self, "_log"):
            self._log.close()

    # ------------------------------------------------------------------ ctrl_tcp

    def _read_loop(self) -> None:
        buf = b""
        sock = self._sock
        assert sock is not None
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += chunk
            while True:  # netstrings: b"LEN:JSON,"
                colon = buf.find(b":")
                if colon < 0 or not buf[:colon].isdigit():
                    break
                size = int(buf[:colon])
                end = colon + 1 + size
                if len(buf) < end + 1:
                    break
                frame, buf = buf[colon + 1:end], buf[end + 1:]
                try:
                    msg = json.loads(frame)
                except ValueError:
                    continue
                with self._cond:
                    if msg.get("event"):
                        self._events.append(Event(
                            type=str(msg.get("type", "")), param=str(msg.get("param", "")),
                            direction=str(msg.get("direction", "")), peeruri=str(msg.get("peeruri", "")),
                            call_id=str(msg.get("id", "")), raw=msg,
                        ))
                    elif msg.get("response") and "token" in msg:
                        self._responses[msg["token"]] = msg
                    self._cond.notify_all()

    def command(self, name: str, params: str | None = None, timeout: float = 5.0) -> str:
        """Run a baresip command; returns its text output, raises AssertionError if it failed."""
        if self._sock is None:
            self._fail(f"command {name}: the phone is not started")
        self._token += 1
        token = f"t{self._token}"
        msg: dict[str, str] = {"command": name, "token": token}
        if params is not None:
            msg["params"] = params
        data = json.dumps(msg).encode()
        self._sock.sendall(b"%d:%s," % (len(data), data))
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(min(left, 0.2))
            resp = self._responses.pop(token, None)
        if resp is None:
            self._fail(f"no response to command {name} {params or ''} within {timeout:.0f} s")
        if not resp.get("ok"):
            self._fail(f"command {name} {params or ''} failed: {resp.get('data')!r}")
        return str(resp.get("data", ""))

    # ------------------------------------------------------------------ verbs

    def register(self, timeout: float = 10.0) -> Event:
        """(Re)create the UA with registration on and wait for REGISTER_OK (fails on REGISTER_FAIL)."""
        if self.proxy is None:
            raise ValueError(f"{self.name}: no proxy to register with")
        self.command("uadel", self.aor)
        self.command("uanew", self.account_line(self.regint))
        return self.wait_event("REGISTER_OK", timeout, fail_on=("REGISTER_FAIL",))

    def unregister(self, timeout: float = 5.0) -> str:
        """Delete the registered UA (libre sends a REGISTER with expires=0) and recreate it unregistered.

        baresip 1.0 has no unregister command: deleting the UA ends its registration, and no event
        reports the registrar's answer, so it is read from the SIP trace. Returns that answer's
        status line ("200 OK"); fails if there is none within ``timeout``.
        """
        self.command("uadel", self.aor)
        self.wait_event("UNREGISTERING", timeout)
        deadline = time.monotonic() + timeout
        while True:
            status = self._unregister_answer()
            if status is not None:
                break
            if time.monotonic() > deadline:
                self._fail(f"no answer to the REGISTER with expires=0 within {timeout:.0f} s")
            time.sleep(0.05)
        self.command("uanew", self.account_line(0))
        return status

    def _unregister_answer(self) -> str | None:
        """The status line of the response to the last REGISTER with expires=0 in the SIP trace."""
        cseq = None
        status = None
        for block in self.trace():
            start = block[1] if len(block) > 1 else ""
            cseq_line = next((x for x in block if x.lower().startswith("cseq:")), "")
            if start.startswith("REGISTER ") and any(x.lower().startswith("contact:") and "expires=0" in x
                                                     for x in block):
                cseq, status = cseq_line, None
            elif start.startswith("SIP/2.0 ") and cseq is not None and cseq_line == cseq and int(start[8:11]) >= 200:
                status = start[8:]
        return status

    def trace(self) -> list[list[str]]:
        """The SIP messages of the log's trace (-s), each as its lines: "UDP a -> b", start line, headers..."""
        return [b.splitlines() for b in _TRACE_MARK.split(self.log())[1:]]

    def dial(self, uri: str) -> None:
        """Call ``uri`` (an INVITE through the outbound proxy, if any).

        baresip appends the account's URI parameters (";transport=tcp") to every dialled URI; the
        same parameter already in ``uri`` is dropped so that it does not appear twice.
        """
        if self.transport == "tcp" and uri.endswith(";transport=tcp"):
            uri = uri[: -len(";transport=tcp")]
        self.command("dial", uri)

    def answer(self) -> None:
        """Answer the current incoming call (200 OK)."""
        self.command("accept")

    def hangup(self) -> None:
        """End the current call: BYE when established, CANCEL when ringing out, 486 when ringing in."""
        self.command("hangup")

    # ------------------------------------------------------------------ events

    def wait_event(self, type_: str, timeout: float = 10.0, *, fail_on: tuple[str, ...] = (),
                   where: Callable[[Event], bool] | None = None) -> Event:
        """The oldest event of ``type_`` not returned before (it is consumed; other events are not,
        so two waits find events in either order: baresip may report RTP before the call).

        Fails at once when an unconsumed event in ``fail_on`` is there first, when baresip exits, or at
        the deadline.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, ev in enumerate(self._events):
                    if i in self._consumed:
                        continue
                    if ev.type == type_ and (where is None or where(ev)):
                        self._consumed.add(i)
                        return ev
                    if ev.type in fail_on:
                        self._consumed.add(i)
                        self._fail(f"waiting for {type_}, got {ev}", locked=True)
                if self._closed or (self.proc is not None and self.proc.poll() is not None):
                    self._fail(f"waiting for {type_}: baresip's control connection closed", locked=True)
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail(f"no {type_} within {timeout:.0f} s", locked=True)
                self._cond.wait(min(left, 0.2))

    def events(self) -> list[Event]:
        """Every event received so far."""
        with self._cond:
            return list(self._events)

    def assert_no_event(self, type_: str, within: float = 1.0) -> None:
        """Fail if a not yet consumed ``type_`` event arrives within ``within`` seconds."""
        deadline = time.monotonic() + within
        with self._cond:
            while True:
                for i, ev in enumerate(self._events):
                    if ev.type == type_ and i not in self._consumed:
                        self._fail(f"unexpected {ev}", locked=True)
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(left, 0.2))

    # ------------------------------------------------------------------ diagnostics

    def sockets(self) -> list[tuple[str, str, int]]:
        """The process's sockets as (proto, local address, local port), from /proc (Linux)."""
        assert self.proc is not None
        inodes = set()
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found = []
        for proto in ("udp", "tcp", "udp6", "tcp6"):
            table = Path(f"/proc/{self.proc.pid}/net/{proto}")
            for line in table.read_text().splitlines()[1:]:
                cols = line.split()
                if cols[9] not in inodes:
                    continue
                hexaddr, hexport = cols[1].split(":")
                raw = bytes.fromhex(hexaddr)
                if len(raw) == 4:
                    addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
                else:  # four little-endian 32-bit words
                    addr = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
                found.append((proto.rstrip("6"), addr, int(hexport, 16)))
        return found

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def report(self) -> str:
        """This phone's events and the tail of its log (SIP trace included)."""
        with self._cond:
            evs = "\n".join(f"  {e}" for e in self._events) or "  (none)"
        return f"==== phone {self.name} ({self.uri}, ctrl {self.ctrl_port})\nevents:\n{evs}\n" \
               f"---- {self.log_path}\n{_ANSI.sub('', self.log())[-LOG_TAIL:]}"

    def _fail(self, what: str, locked: bool = False) -> None:
        # The reader thread needs the lock to deliver events; give it back while the logs are read.
        if locked:
            self._cond.release()
        try:
            detail = self.context() if self.context is not None else self.report()
        finally:
            if locked:
                self._cond.acquire()
        raise AssertionError(f"phone {self.name}: {what}\n{detail}")


# ---------------------------------------------------------------------- call flows the tests share

def establish(caller: Phone, callee: Phone, uri: str, timeout: float = 10.0) -> str:
    """caller dials uri, callee rings and answers, both are established with media; returns the Call-ID."""
    ring(caller, callee, uri, timeout)
    callee.answer()
    out = caller.wait_event("CALL_ESTABLISHED", timeout, fail_on=("CALL_CLOSED",))
    callee.wait_event("CALL_ESTABLISHED", timeout, fail_on=("CALL_CLOSED",))
    # RTP flowed both ways (baresip reports the first packet received on each side).
    caller.wait_event("CALL_RTPESTAB", timeout, fail_on=("CALL_CLOSED",))
    callee.wait_event("CALL_RTPESTAB", timeout, fail_on=("CALL_CLOSED",))
    return out.call_id


def ring(caller: Phone, callee: Phone, uri: str, timeout: float = 10.0) -> Event:
    """caller dials uri and hears ringing (180), callee reports the incoming call; returns that event.

    The caller's side is awaited first so that a refused INVITE (404, 482 ...) fails at once with its
    status instead of as a missing CALL_INCOMING.
    """
    caller.dial(uri)
    caller.wait_event("CALL_RINGING", timeout, fail_on=("CALL_CLOSED",))
    incoming = callee.wait_event("CALL_INCOMING", timeout)
    if incoming.peeruri != caller.aor:
        callee._fail(f"the incoming call is from {incoming.peeruri}, expected {caller.aor}")
    return incoming


def hang_up(by: Phone, other: Phone, timeout: float = 10.0) -> tuple[Event, Event]:
    """``by`` ends the call; both sides report CALL_CLOSED. Returns (by's event, other's event)."""
    by.hangup()
    return by.wait_event("CALL_CLOSED", timeout), other.wait_event("CALL_CLOSED", timeout)
