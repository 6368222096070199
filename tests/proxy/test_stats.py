"""The statistics (OpenSIPS names, core/stats.py), the graceful stop's 503, reload
(Proxy.reconfigure) and the control commands (control.py), sans-IO or on a real UNIX socket.

Every figure is pinned exactly for a known message sequence: a counter that counts the wrong
event, or twice, fails here.
"""

from __future__ import annotations

import asyncio
import os
import stat
import types

import pytest

from proxyapp.config import Config
from proxyapp.control import Commands, ControlError, ControlServer, combine, request
from proxyapp.location import Binding, Location
from proxyapp.metrics import families
from proxyapp.script import Script

from .harness import CALLEE, CALLER, Harness, req, resp_for, sends
from .seed import PROXY_IP

ROUTE = f"Route: <sip:{PROXY_IP};lr>\r\n"


def _call(h: Harness, n: int = 1, bye: bool = True) -> None:
    """INVITE, 180, 200, ACK and (optionally) BYE + 200 of call ``n`` through the proxy."""
    cid = f"Call-ID: call-{n}@test\r\n"

    def with_cid(data: bytes) -> bytes:
        return data.replace(b"Call-ID: call-1@test\r\n", cid.encode())

    inv = sends(h.rx(with_cid(req(branch=f"z9hG4bKi{n}"))))[-1].data
    h.rx(resp_for(inv, 180, "Ringing"), CALLEE)
    h.rx(resp_for(inv, 200, "OK"), CALLEE)
    assert len(sends(h.rx(with_cid(req("ACK", branch=f"z9hG4bKa{n}", to_tag="b1", extra=ROUTE))))) == 1
    if bye:
        fwd = sends(h.rx(with_cid(req("BYE", branch=f"z9hG4bKb{n}", cseq=2, to_tag="b1", extra=ROUTE))))
        assert fwd[-1].data.startswith(b"BYE ")
        h.rx(resp_for(fwd[-1].data, 200, "OK"), CALLEE)


def test_a_call_counts_as_opensips_does():
    h = Harness()
    _call(h, 1, bye=False)
    s = h.proxy.statistics()
    assert s["dialog"] == {"active_dialogs": 1, "processed_dialogs": 1}
    fwd = sends(h.rx(req("BYE", branch="z9hG4bKb1", cseq=2, to_tag="b1", extra=ROUTE)))
    h.rx(resp_for(fwd[-1].data, 200, "OK"), CALLEE)
    s = h.proxy.statistics()
    assert s["core"] == {
        "rcv_requests": 3, "rcv_replies": 3, "fwd_requests": 3, "fwd_replies": 3, "drop_requests": 0,
        "drop_replies": 0, "err_requests": 0, "bad_msg_hdr": 0, "retransmissions": 0, "absorbed_acks": 0,
        "keepalives": 0, "draining_rejects": 0, "stray_replies": 0, "stray_requests": 0,
    }
    # The INVITE and the BYE are transactions; the ACK of the 2xx goes statelessly (§16.11).
    assert s["tm"] == {
        "UAS_transactions": 2, "UAC_transactions": 2, "inuse_transactions": 4, "2xx_transactions": 2,
        "3xx_transactions": 0, "4xx_transactions": 0, "5xx_transactions": 0, "6xx_transactions": 0,
        "local_replies": 0, "relayed_replies": 3, "icmp_failures": 0,
    }
    assert s["sl"]["sent_replies"] == 0
    assert s["dialog"] == {"active_dialogs": 0, "processed_dialogs": 1}
    h.drain()
    assert h.proxy.statistics()["tm"]["inuse_transactions"] == 0


def test_retransmissions_reinvites_and_local_replies():
    h = Harness()
    _call(h, 1, bye=False)
    h.rx(req(branch="z9hG4bKi1"))  # the INVITE again: absorbed, not a new transaction
    # A re-INVITE in the dialog is answered 2xx too: still one dialog.
    re = sends(h.rx(req(branch="z9hG4bKre", cseq=3, to_tag="b1", extra=ROUTE)))[-1].data
    h.rx(resp_for(re, 200, "OK"), CALLEE)
    # A branch nobody answers: Timer B, the proxy's own 408 upstream (a local reply, tm 4xx).
    h.rx(req(branch="z9hG4bKlost").replace(b"call-1@test", b"lost@test"))
    h.drain()
    s = h.proxy.statistics()
    # INVITE, ACK, the INVITE again, the re-INVITE, the lost INVITE
    assert s["core"]["retransmissions"] == 1 and s["core"]["rcv_requests"] == 5
    assert s["dialog"] == {"active_dialogs": 1, "processed_dialogs": 1}
    assert s["tm"]["UAS_transactions"] == 3 and s["tm"]["UAC_transactions"] == 3
    assert (s["tm"]["2xx_transactions"], s["tm"]["4xx_transactions"]) == (2, 1)
    assert (s["tm"]["local_replies"], s["tm"]["relayed_replies"]) == (1, 3)


def test_stateless_replies_errors_and_drops():
    h = Harness()
    h.rx(req("OPTIONS", max_forwards="0"))  # 483 from the script (sl_send_reply)
    h.rx(req("OPTIONS", branch="z9hG4bKmf", max_forwards="abc"))  # 400: bad Max-Forwards
    h.rx(b"hello there\r\n\r\n")  # garbage: no Via to answer
    h.rx(b"\r\n\r\n")  # a keep-alive
    late = resp_for(req("OPTIONS", branch="z9hG4bKgone"), 200, "OK")  # not ours, no transaction
    h.rx(late, CALLEE)
    s = h.proxy.statistics()
    assert s["sl"] == {"1xx_replies": 0, "2xx_replies": 0, "3xx_replies": 0, "4xx_replies": 1,
                       "5xx_replies": 0, "6xx_replies": 0, "sent_replies": 1}
    assert s["core"]["err_requests"] == 1 and s["core"]["bad_msg_hdr"] == 2
    assert (s["core"]["drop_requests"], s["core"]["drop_replies"]) == (1, 1)
    assert s["core"]["keepalives"] == 1
    assert s["core"]["rcv_requests"] == 2 and s["core"]["rcv_replies"] == 1


def test_a_script_that_does_nothing_drops_the_request():
    h = Harness(script=Script(types.SimpleNamespace(route=lambda msg, ctx: None), None))
    assert h.rx(req("OPTIONS")) == []
    assert h.proxy.statistics()["core"]["drop_requests"] == 1


def test_draining_refuses_new_invites_with_503_and_retry_after_only():
    h = Harness()
    _call(h, 1, bye=False)
    pending = sends(h.rx(req(branch="z9hG4bKp").replace(b"call-1@test", b"pending@test")))
    assert h.proxy.pending_transactions() == 1
    h.proxy.draining = True
    (resp,) = sends(h.rx(req(branch="z9hG4bKnew").replace(b"call-1@test", b"new@test")))
    assert resp.data.startswith(b"SIP/2.0 503 Service Unavailable\r\n") and b"\r\nRetry-After: 5\r\n" in resp.data
    assert resp.dest.addr == CALLER
    # In-dialog requests still go through: the calls in progress can end.
    fwd = sends(h.rx(req("BYE", branch="z9hG4bKb1", cseq=2, to_tag="b1", extra=ROUTE)))
    assert fwd[-1].data.startswith(b"BYE ")
    # So do the pending call's responses and the BYE's; once they have their finals, nothing is
    # pending (completed transactions only absorb retransmissions: the stop does not wait for them).
    assert h.proxy.pending_transactions() == 2
    h.rx(resp_for(pending[-1].data, 486, "Busy Here"), CALLEE)
    h.rx(resp_for(fwd[-1].data, 200, "OK"), CALLEE)
    assert h.proxy.pending_transactions() == 0
    assert h.proxy.statistics()["core"]["draining_rejects"] == 1


def _script(header: str) -> Script:
    def route(msg, ctx):
        msg.append_header("X-Script", header)
        ctx.t_relay()

    return Script(types.SimpleNamespace(route=route), None)


def test_reconfigure_serves_new_requests_with_the_new_script_and_timers():
    h = Harness(script=_script("old"))
    first = sends(h.rx(req(branch="z9hG4bKone")))[-1]
    assert b"X-Script: old" in first.data
    cfg = Config.from_dict({"listen": [f"udp:{PROXY_IP}:5060", f"tcp:{PROXY_IP}:5060"], "timers": {"fr_timeout": 7}})
    h.proxy.reconfigure(cfg, _script("new"))
    second = sends(h.rx(req(branch="z9hG4bKtwo").replace(b"call-1@test", b"two@test")))[-1]
    assert b"X-Script: new" in second.data
    assert second.tx._cfg.fr_timeout == 7 and first.tx._cfg.fr_timeout == 32.0
    # A bad [registrar] table is refused before anything changes.
    bad = Config.from_dict({"registrar": {"min_expires": -5}})
    with pytest.raises(ValueError):
        h.proxy.reconfigure(bad, _script("bad"))
    third = sends(h.rx(req(branch="z9hG4bKthree").replace(b"call-1@test", b"three@test")))[-1]
    assert b"X-Script: new" in third.data


def _commands(h: Harness, tmp_path, script_text: str | None = None, **kw) -> tuple[Commands, object]:
    path = tmp_path / "script.py"
    if script_text is not None:
        path.write_text(script_text)
    cfg = Config.from_dict({"listen": [f"udp:{PROXY_IP}:5060", f"tcp:{PROXY_IP}:5060"], "script": str(path)})
    return Commands(h.proxy, h.cfg, load_config=lambda: cfg, **kw), path


def test_control_commands(tmp_path):
    loc = Location()
    h = Harness(location=loc)
    levels = []
    cmds, path = _commands(h, tmp_path, set_log_level=levels.append)
    _call(h, 1, bye=False)
    stats = cmds.run("stats", [])
    assert list(stats) == ["core", "tm", "sl", "dialog", "acc", "usrloc", "auth", "tcp", "limits", "workers", "process"]
    assert stats["core"]["rcv_requests"] == 2 and stats["acc"] == {}
    assert stats["process"]["rss_bytes"] > 1 << 20 and stats["process"]["open_fds"] > 2
    assert cmds.run("stats", ["tm"]) == {"tm": h.proxy.statistics()["tm"]}
    with pytest.raises(ControlError, match="unknown statistics group 'nope'"):
        cmds.run("stats", ["nope"])
    d = cmds.run("dialogs", [])
    assert d["count"] == 1 and d["dialogs"][0]["call_id"] == "call-1@test"
    t = cmds.run("transactions", [])
    assert t["count"] == 2 and {x["kind"] for x in t["transactions"]} == {"server", "client"}
    assert {x["method"] for x in t["transactions"]} == {"INVITE"}
    assert cmds.run("acc", ["status"]) == {"enabled": False}
    # usrloc
    loc.put("sip:alice@example.com", [Binding("sip:alice@example.com", "sip:alice@10.0.0.5:5062", 2e9)], 1000.0)
    assert cmds.run("stats", ["usrloc"]) == {"usrloc": {"registered_aors": 1, "registered_contacts": 1}}
    shown = cmds.run("ul", ["show"])
    assert list(shown) == ["sip:alice@example.com"] and shown["sip:alice@example.com"][0]["contact"] == "sip:alice@10.0.0.5:5062"
    assert cmds.run("ul", ["rm", "sip:alice@example.com"]) == {"removed": 1}
    with pytest.raises(ControlError, match="nothing removed"):
        cmds.run("ul", ["rm", "sip:alice@example.com"])
    # log level
    assert cmds.run("log-level", ["debug"]) == {"log_level": "DEBUG", "was": "INFO"}
    assert levels == ["DEBUG"] and h.proxy.debug
    with pytest.raises(ControlError, match="unknown level 'LOUD'"):
        cmds.run("log-level", ["loud"])
    # reload: a broken script keeps the running one
    path.write_text("def route(msg, ctx:\n")
    with pytest.raises(ControlError, match="reload failed, nothing changed: script .*SyntaxError"):
        cmds.run("reload", [])
    path.write_text("def route(msg, ctx):\n    msg.append_header('X-Reloaded', 'yes')\n    ctx.t_relay()\n")
    assert cmds.run("reload", []) == {"script": str(path), "restart_needed": [], "reloads": 1}
    fwd = sends(h.rx(req(branch="z9hG4bKr").replace(b"call-1@test", b"r@test")))[-1]
    assert b"X-Reloaded: yes" in fwd.data
    with pytest.raises(ControlError, match="unknown command 'frobnicate'"):
        cmds.run("frobnicate", [])


def test_reload_reports_what_needs_a_restart(tmp_path):
    h = Harness()
    path = tmp_path / "s.py"
    path.write_text("def route(msg, ctx):\n    ctx.t_relay()\n")
    cfg = Config.from_dict({"listen": [f"udp:{PROXY_IP}:5070"], "script": str(path), "max_message_size": 4096})
    cmds = Commands(h.proxy, h.cfg, load_config=lambda: cfg)
    result = cmds.run("reload", [])
    assert result["restart_needed"] == ["listen", "max_message_size"]
    assert h.proxy.cfg.listen == h.cfg.listen and h.proxy.cfg.max_message_size == 65535


def test_control_socket_serves_json_lines_with_mode_0600(tmp_path):
    h = Harness()
    cmds, _ = _commands(h, tmp_path)
    sock = str(tmp_path / "ctl.sock")

    async def main():
        server = ControlServer(cmds, sock)
        assert await server.start()
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        # A second proxy on the same path does not steal it.
        assert not await ControlServer(cmds, sock).start()
        try:
            ping = await asyncio.to_thread(request, sock, "ping")
            assert ping == {"pid": os.getpid(), "worker": None}
            core = await asyncio.to_thread(request, sock, "stats", ["core"])
            assert core["core"]["rcv_requests"] == 0
            with pytest.raises(ControlError, match="unknown command"):
                await asyncio.to_thread(request, sock, "nope")
        finally:
            await server.close()
        assert not os.path.exists(sock)

    asyncio.run(main())
    with pytest.raises(ConnectionError, match="no proxyapp listens on"):
        request(sock, "ping")


def test_combine_sums_counters_and_keeps_the_worst_lag():
    a = {"core": {"rcv_requests": 3}, "process": {"loop_lag_s": 0.2, "rss_bytes": 10}, "acc": {"db": {"written": 1}}}
    b = {"core": {"rcv_requests": 4}, "process": {"loop_lag_s": 0.1, "rss_bytes": 5}, "acc": {"db": {"written": 2}}}
    assert combine([a, b]) == {
        "core": {"rcv_requests": 7}, "process": {"loop_lag_s": 0.2, "rss_bytes": 15}, "acc": {"db": {"written": 3}},
    }
    assert combine([{"dialogs": [1]}, {"dialogs": [2, 3]}]) == {"dialogs": [1, 2, 3]}


def test_prometheus_families_names_types_and_labels():
    snap = {
        "core": {"rcv_requests": 5}, "tm": {"inuse_transactions": 2, "2xx_transactions": 1},
        "acc": {"db": {"written": 4, "queued": 1}, "log": {"written": 4, "queued": 0}},
    }
    fams = {f.name: f for f in families(snap)}
    # prometheus_client keeps a counter family's name without _total; the sample carries it.
    assert fams["proxyapp_core_rcv_requests"].type == "counter"
    assert [s.name for s in fams["proxyapp_core_rcv_requests"].samples] == ["proxyapp_core_rcv_requests_total"]
    assert fams["proxyapp_tm_inuse_transactions"].type == "gauge"
    assert fams["proxyapp_tm_2xx_transactions"].samples[0].value == 1
    written = fams["proxyapp_acc_written"]
    assert sorted((s.labels["backend"], s.value) for s in written.samples) == [("db", 4), ("log", 4)]
    assert fams["proxyapp_acc_queued"].type == "gauge"
