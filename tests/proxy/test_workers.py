"""Several workers on one port (proxyapp.workers): the Call-ID ownership rule, and real SIPp calls,
CANCELs and retransmissions through two worker processes."""

from __future__ import annotations

import re

import pytest

from proxyapp.config import Config, ConfigError
from proxyapp.workers import call_id_of, owner_of, pack, unpack

from .harness import Harness, req, resp_for, sends
from .support import free_port
from .test_e2e_sipp import FAST_TIMERS, _assert_ok


def test_every_message_of_a_call_has_the_owner_of_its_call_id():
    # INVITE, CANCEL, ACK, BYE and the responses of one call (compact form too) go to one worker:
    # the one holding its transactions and its accounting dialog.
    h = Harness()
    invite = req()
    fwd = sends(h.rx(invite))[1].data
    msgs = [
        invite, fwd, resp_for(fwd, 180, "Ringing"), resp_for(fwd, 200, "OK"),
        req("CANCEL"), req("ACK", to_tag="b1"), req("BYE", cseq=2, to_tag="b1", branch="z9hG4bKbye"),
        invite.replace(b"Call-ID:", b"i:"), invite.replace(b"Call-ID:", b"call-id:  "),
    ]
    assert {call_id_of(m) for m in msgs} == {b"call-1@test"}
    for workers in (2, 3, 8):
        assert len({owner_of(m, workers) for m in msgs}) == 1
    # Call-IDs spread over the workers.
    owners = {owner_of(invite.replace(b"call-1@test", f"c{i}@x".encode()), 4) for i in range(64)}
    assert owners == {0, 1, 2, 3}
    assert owner_of(b"garbage without a call id", 4) == -1


def test_hand_off_keeps_source_address_and_message():
    data = req()
    assert unpack(pack(data, "2001:db8::1", 5062, 1)) == (data, "2001:db8::1", 5062, 1)
    with pytest.raises(ValueError):
        unpack(b"no header line")


def test_workers_config():
    assert Config.from_dict({}).workers == 1
    assert Config.from_dict({"listen": ["udp:127.0.0.1:5060"], "workers": 4}).workers == 4
    for bad in (0, 65, "2", True):
        with pytest.raises(ConfigError, match="workers"):
            Config.from_dict({"listen": ["udp:127.0.0.1:5060"], "workers": bad})
    with pytest.raises(ConfigError, match="UDP-only"):
        Config.from_dict({"workers": 2})  # the default listen list has TCP


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_two_workers_carry_calls_cancels_and_retransmissions(proxy_factory, sipp):
    # 10 calls, 6 CANCELs after 180 and 10 lossy calls (the callee drops 30 % of INVITEs and BYEs,
    # the caller 30 % of the 100s and BYE 200s) through 2 workers. The caller's and the callee's
    # datagrams land on workers by the kernel's 4-tuple hash; the owner of each Call-ID handles it:
    # every call succeeds, nothing is forwarded twice, every retransmission is absorbed by the
    # worker holding its transaction, and messages did cross between the workers.
    # As the single-process lossy test (test_e2e_sipp): room for SIPp's streaks of losses, Timer
    # E capped at T2 = 400 ms and Timer C at 8 s, so an INVITE's copies run until Timer B
    # (64*T1). With Timer C at 3 s only 4 or 5 copies went out, and 30 % loss of each failed one
    # of the 10 calls now and then (seen in a .ci/run: the copies that came were all lost, 408).
    timers = (FAST_TIMERS.replace("T1 = 100", "T1 = 100\nT2 = 400").replace("fr_timeout = 2", "fr_timeout = 8")
              .replace("fr_inv_timeout = 3", "fr_inv_timeout = 8").replace("wt_timer = 1", "wt_timer = 32"))
    proxy = proxy_factory("workers = 2\n" + timers, transports=("udp",))
    uas_port = free_port()
    uas = sipp.uas("uas_call.xml", uas_port, calls=10)
    res = sipp.uac("uac_call.xml", proxy.port, f"127.0.0.1:{uas_port}", calls=10, extra=["-r", "10"])
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "calls through 2 workers")
    outs = [res.stdout.decode(errors="replace")]
    uas_port = free_port()
    uas = sipp.uas("uas_cancelled.xml", uas_port, calls=6)
    res = sipp.uac("uac_cancel.xml", proxy.port, f"127.0.0.1:{uas_port}", calls=6, extra=["-r", "10"])
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "CANCELs through 2 workers")
    outs.append(res.stdout.decode(errors="replace"))
    uas_port = free_port()
    uas = sipp.uas("uas_call_lossy.xml", uas_port, calls=10)
    res = sipp.uac("uac_call_lossy.xml", proxy.port, f"127.0.0.1:{uas_port}", calls=10, timeout=60,
                   extra=["-r", "5", "-l", "5"])
    _assert_ok(res, sipp.wait(uas, 60), proxy, sipp, "lossy calls through 2 workers")
    proxy.stop()
    log = proxy.log()
    assert len(re.findall(r"forward INVITE ", log)) == 26, log[-5000:]
    assert len(re.findall(r"forward BYE ", log)) == 20
    assert len(re.findall(r"CANCEL branch ", log)) == 6
    outs.append(res.stdout.decode(errors="replace"))
    for method in ("INVITE", "BYE"):
        # SIPp's Retrans column of each run (its last screen); on loopback mostly the lossy run's
        retrans = sum(int(found[-1][1]) for out in outs
                      if (found := re.findall(rf"{method} ---------->\s+(\d+)\s+(\d+)", out)))
        absorbed = len(re.findall(rf"request {method} .* transaction found", log))
        assert absorbed == retrans, (method, absorbed, retrans)
    moved = [tuple(map(int, m)) for m in re.findall(r"worker \d: handed (\d+) messages to their owner, took over (\d+)", log)]
    assert len(moved) == 2, log[-3000:]
    handed = sum(m[0] for m in moved)
    assert handed > 0 and handed == sum(m[1] for m in moved)


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_supervisor_restarts_a_killed_worker_and_calls_go_on(proxy_factory, sipp):
    import os
    import signal
    import time

    proxy = proxy_factory("workers = 2\n" + FAST_TIMERS, transports=("udp",))

    def workers() -> list[int]:
        path = f"/proc/{proxy.proc.pid}/task/{proxy.proc.pid}/children"
        with open(path) as fh:
            return sorted(int(p) for p in fh.read().split())

    before = workers()
    assert len(before) == 2
    time.sleep(2.2)  # a worker dying right after start stops the supervisor instead (no spin)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not re.search(r"restarting it", proxy.log()) or proxy.log().count(" ready ") < 3:
        assert time.monotonic() < deadline, proxy.log()
        time.sleep(0.05)
    after = workers()
    assert len(after) == 2 and before[0] not in after and before[1] in after
    uas_port = free_port()
    uas = sipp.uas("uas_call.xml", uas_port, calls=6)
    res = sipp.uac("uac_call.xml", proxy.port, f"127.0.0.1:{uas_port}", calls=6, extra=["-r", "10"])
    _assert_ok(res, sipp.wait(uas), proxy, sipp, "calls after a worker restart")
    proxy.stop()
    assert proxy.proc.returncode == 0
    assert re.search(r"worker 0: handed", proxy.log()) and re.search(r"worker 1: handed", proxy.log())
