"""[limits] against real floods and scanners (issue 17 items 3-4), in a private network namespace.

Each test re-runs this module under ``unshare -n`` (a network namespace of its own, only ``lo``
up, so no packet or DNS query leaves): the proxy (Proxy + Edge, in the driver's own event loop,
with the cycle collector off as proxyapp's main() has it), SIPp peers and sipvicious are all inside
it; the driver prints its measurements as one JSON line, which the test checks.

    PYTHONPATH=src:. unshare -n -- python3 -m tests.proxy.test_floods flood    # by hand
    PYTHONPATH=src:. unshare -n -- python3 -m tests.proxy.test_floods memory [RATE SECONDS AFTER T1_MS] [--no-trim]

    PYTHONPATH=src:. unshare -n -- python3 -m tests.proxy.test_floods crack [--no-filter]

Needs root (unshare), SIPp and sipvicious (``pip install sipvicious``).
"""

from __future__ import annotations

import array
import asyncio
import gc
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
PROXY = ("127.0.0.1", 5060)
UAS = ("127.0.0.1", 5070)  # trusted: it answers every call
LEGIT = "127.0.0.2"  # the legitimate caller, 20 calls/s
FLOODER = "127.0.0.3"
DEAD = "127.0.0.9:5099"  # nothing listens: the kernel answers ICMP port unreachable
SILENT = ("127.0.0.10", 5099)  # bound and never read: no answer, not even ICMP (memory())

# The RSS bound of the flood test (MiB): the proxy and its tables after the flood was banned.
FLOOD_RSS_BOUND_MB = 200


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _sipp(tmp: Path, name: str, args: list[str]) -> list[str]:
    exe = shutil.which("sipp")
    assert exe is not None
    return [exe, "-nostdin", "-trace_err", "-error_file", str(tmp / f"{name}.err"), *args]


async def _spawn(cmd: list[str], tmp: Path, name: str) -> asyncio.subprocess.Process:
    out = (tmp / f"{name}.out").open("wb")
    return await asyncio.create_subprocess_exec(*cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(tmp))


async def _wait(proc: asyncio.subprocess.Process, timeout: float) -> int:
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        proc.kill()  # (a process this driver started, by its object)
        await proc.wait()
        return -999


def _calls(text: str) -> tuple[int, int]:
    """SIPp's final screen: (successful, failed) calls."""
    ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", text)
    bad = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", text)
    return (int(ok[-1]) if ok else 0, int(bad[-1]) if bad else 0)


async def _start_proxy(limits: dict[str, Any], timers: dict[str, Any] | None = None, **extra: Any) -> Any:
    from proxyapp.config import Config
    from proxyapp.logs import setup_logging
    from proxyapp.proxy import Proxy
    from proxyapp.transport import Edge

    data: dict[str, Any] = {"listen": [f"udp:{PROXY[0]}:{PROXY[1]}"], "log_level": "WARNING", "limits": limits}
    if timers:
        data["timers"] = timers
    data.update(extra)
    cfg = Config.from_dict(data)
    setup_logging("WARNING", cfg.log_format)
    proxy = Proxy(cfg)
    if proxy.auth is not None:
        await proxy.auth.start()
    edge = Edge(proxy, cfg)
    await edge.start()
    gc.collect()
    gc.freeze()
    gc.disable()
    return proxy, edge


async def _legit_calls(tmp: Path, uas: tuple[str, int]) -> tuple[Any, Any]:
    """The callee at ``uas`` (answers every call) and the legitimate caller from LEGIT: 200
    calls at 20 calls/s through the proxy."""
    callee = await _spawn(_sipp(tmp, "uas", [
        "-sf", str(SCENARIOS / "uas_call.xml"), "-i", uas[0], "-p", str(uas[1]), "-m", "201", "-timeout", "60",
    ]), tmp, "uas")
    await asyncio.sleep(0.3)
    legit = await _spawn(_sipp(tmp, "legit", [
        "-sf", str(SCENARIOS / "uac_call.xml"), "-i", LEGIT, "-p", "5080", f"{PROXY[0]}:{PROXY[1]}",
        "-key", "uas", f"{uas[0]}:{uas[1]}", "-r", "20", "-m", "200", "-timeout", "40",
    ]), tmp, "legit")
    return callee, legit


async def _one_more_call(tmp: Path, uas: tuple[str, int]) -> int:
    """One call from a new source (127.0.0.6) after the attack: the proxy still serves."""
    last = await _spawn(_sipp(tmp, "last", [
        "-sf", str(SCENARIOS / "uac_call.xml"), "-i", "127.0.0.6", "-p", "5081", f"{PROXY[0]}:{PROXY[1]}",
        "-key", "uas", f"{uas[0]}:{uas[1]}", "-m", "1", "-timeout", "10",
    ]), tmp, "last")
    return await _wait(last, 20)


async def flood(tmp: Path) -> dict[str, Any]:
    """A SIPp flood from FLOODER (banned), a 20 calls/s SIPp caller from LEGIT (served),
    svmap and svwar (unanswered), then one more call (the proxy still serves)."""
    proxy, edge = await _start_proxy({
        "reqs_density_per_unit": 200, "sampling_time_unit": 2, "ban_time": 60, "trusted": [UAS[0]],
    })
    rss = {"before": rss_mb()}
    uas, legit = await _legit_calls(tmp, UAS)
    await asyncio.sleep(1.0)
    flooder = await _spawn(_sipp(tmp, "flood", [
        "-sf", str(SCENARIOS / "uac_call.xml"), "-i", FLOODER, "-p", "5090", f"{PROXY[0]}:{PROXY[1]}",
        "-key", "uas", DEAD, "-r", "2000", "-m", "12000", "-timeout", "8",
    ]), tmp, "flood")
    await asyncio.sleep(1.0)
    rss["during"] = rss_mb()
    bans_after_flood = proxy.limits.stats()["bans"]
    scans = []
    for name, cmd in (
        ("svmap", ["sipvicious_svmap", "-b", "127.0.0.4", f"{PROXY[0]}", "-p", str(PROXY[1])]),
        ("svmap_invite", ["sipvicious_svmap", "-b", "127.0.0.4", "-m", "INVITE", f"{PROXY[0]}", "-p", str(PROXY[1])]),
        ("svwar", ["sipvicious_svwar", "-b", "127.0.0.5", "-e", "100-120", "-m", "REGISTER", "-p", str(PROXY[1]),
                   f"{PROXY[0]}"]),
    ):
        before = proxy.limits.scanner_dropped
        p = await _spawn(cmd, tmp, name)
        rc = await _wait(p, 40)
        scans.append({"name": name, "rc": rc, "dropped": proxy.limits.scanner_dropped - before,
                      "out": (tmp / f"{name}.out").read_text(errors="replace")[-1500:]})
    rc_flood = await _wait(flooder, 30)
    rc_legit = await _wait(legit, 40)
    await asyncio.sleep(1.0)
    # Still serving: one more call from a new source.
    rc_last = await _one_more_call(tmp, UAS)
    rc_uas = await _wait(uas, 10)
    rss["after"] = rss_mb()
    stats = proxy.limits.stats()
    await edge.close()
    return {
        "legit": _calls((tmp / "legit.out").read_text(errors="replace")), "rc_legit": rc_legit,
        "flood": _calls((tmp / "flood.out").read_text(errors="replace")), "rc_flood": rc_flood,
        "rc_last": rc_last, "rc_uas": rc_uas, "banned": proxy.limits.banned(), "bans_after_flood": bans_after_flood,
        "scans": scans, "limits": stats, "rss_mb": rss, "core": proxy.statistics(),
    }


# svcrack's dictionary: the right password is the 50th guess (DICTIONARY_HIT), so a cracker
# stopped after auth_failures_ban (20) failures cannot find it and one that is not stopped does.
# sipvicious 0.3.4's svcrack does not pass -b on to its socket: it sends from the loopback's
# default source, 127.0.0.1, which nobody else in this test uses (its callee is CRACK_UAS).
CRACKER = "127.0.0.1"
CRACK_UAS = ("127.0.0.8", 5070)
DICTIONARY_HIT = 50


async def crack(tmp: Path, scanner_filter: bool) -> dict[str, Any]:
    """sipvicious svcrack guessing user 100's password at the registrar (tests/proxy/scripts/
    crack_target.py) while a 20 calls/s SIPp caller runs, then one more call. svcrack always
    says User-Agent: friendly-scanner, so with the scanner filter on it is dropped unanswered;
    with it off (a cracker that hides its User-Agent) the failed attempts ban it."""
    proxy, edge = await _start_proxy(
        {"auth_failures_ban": 20, "scanner_filter": scanner_filter, "trusted": [CRACK_UAS[0]]},
        script=str(ROOT / "tests" / "proxy" / "scripts" / "crack_target.py"),
        auth={"db_url": str(tmp / "subscribers.db"), "algorithms": ["MD5"]},
    )
    assert proxy.auth is not None
    proxy.auth.store.add("100", PROXY[0], f"pw{DICTIONARY_HIT:04d}")
    proxy.auth.store.load_sync()
    (tmp / "dictionary.txt").write_text("".join(f"pw{i:04d}\n" for i in range(1, 101)))
    rss = {"before": rss_mb()}
    uas, legit = await _legit_calls(tmp, CRACK_UAS)
    await asyncio.sleep(1.0)
    cracker = await _spawn([
        "sipvicious_svcrack", "-u", "100", "-d", str(tmp / "dictionary.txt"), "-p", str(PROXY[1]),
        "--maximumtime", "5", PROXY[0],
    ], tmp, "svcrack")
    rc_crack = await _wait(cracker, 60)
    rss["during"] = rss_mb()
    rc_legit = await _wait(legit, 40)
    rc_last = await _one_more_call(tmp, CRACK_UAS)
    rc_uas = await _wait(uas, 10)
    rss["after"] = rss_mb()
    out = {
        "legit": _calls((tmp / "legit.out").read_text(errors="replace")), "rc_legit": rc_legit,
        "rc_last": rc_last, "rc_uas": rc_uas, "rc_crack": rc_crack,
        "crack_out": (tmp / "svcrack.out").read_text(errors="replace")[-2000:],
        "banned": proxy.limits.banned(), "limits": proxy.limits.stats(), "auth": proxy.auth.stats(),
        "cracker_failures": proxy.auth.failures(CRACKER), "failure_counts": proxy.auth.failure_counts(), "rss_mb": rss,
    }
    await proxy.auth.close()
    await edge.close()
    return out


async def memory(tmp: Path, trim: bool, rate: int, seconds: int, after: int, t1_ms: int) -> dict[str, Any]:
    """RSS before, during and ``after`` s after a ``rate`` INVITE/s flood of ``seconds`` s toward
    a silent target (the flooder trusted, so its INVITEs all make transactions), with the
    legitimate caller's 20 calls/s alongside and one more call once it is done. Everyone is
    trusted here: the flood is what fills memory, not what the flood limit bans (flood() tests
    that), and on a proxy this busy the caller's own retransmissions and catch-up bursts would
    cross the density and have it banned."""
    proxy, edge = await _start_proxy(
        {"trusted": [FLOODER, LEGIT, UAS[0], "127.0.0.6"], "malloc_trim": trim}, {"T1": t1_ms},
    )
    # The target neither answers nor draws an ICMP error (which would end each transaction at
    # once): a socket nobody reads; the kernel drops what overflows its buffer.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(SILENT)
    # The samples go into arrays allocated up front: a list of tuples of floats, made one a
    # second during the flood, would itself keep pymalloc arenas alive after it (a few small
    # objects in each), and measure the test rather than the proxy.
    steps = seconds + after + 30
    at, rss, live = array.array("d", bytes(8 * steps)), array.array("d", bytes(8 * steps)), array.array("q", bytes(8 * steps))
    n = 0
    t0 = time.monotonic()
    rss_before, blocks_before = rss_mb(), sys.getallocatedblocks()
    uas, legit = await _legit_calls(tmp, UAS)

    async def still_serving() -> tuple[int, int, int]:
        rc_legit = await _wait(legit, seconds + after + 30)
        return rc_legit, await _one_more_call(tmp, UAS), await _wait(uas, 10)

    serving = asyncio.ensure_future(still_serving())
    flooder = await _spawn(_sipp(tmp, "mflood", [
        "-sf", str(SCENARIOS / "uac_call.xml"), "-i", FLOODER, "-p", "5090", f"{PROXY[0]}:{PROXY[1]}",
        "-key", "uas", f"{SILENT[0]}:{SILENT[1]}", "-r", str(rate), "-m", str(rate * seconds), "-l", str(rate * 40),
        "-timeout", str(seconds + 2), "-recv_timeout", "40000",
    ]), tmp, "mflood")
    for _ in range(steps):
        await asyncio.sleep(1.0)
        r = rss_mb()
        at[n], rss[n], live[n] = time.monotonic() - t0, r, proxy.tx_budget.live
        n += 1
        # At least ``after`` s, and until the drop has settled (its last collection and trim),
        # which comes later on a slow machine: the transactions' Timer B fire late there.
        if time.monotonic() - t0 >= seconds + after and proxy.limits.settles:
            break
    blocks_end, settled_at_end = sys.getallocatedblocks(), proxy.limits.settles
    await _wait(flooder, 5)
    rc_legit, rc_last, rc_uas = await serving
    # Diagnosis: what a collection of cyclic garbage and a malloc_trim would still give back.
    garbage = gc.collect()
    rss_gc = rss_mb()
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    out = {
        "gc_collected": garbage, "rss_after_gc": round(rss_gc, 1), "rss_after_trim": round(rss_mb(), 1),
        "trim": trim, "rss_before": round(rss_before, 1), "rss_peak": round(max(rss[:n]), 1),
        "rss_end": round(rss[n - 1], 1), "blocks_before": blocks_before, "blocks_end": blocks_end, "settled_at_end": settled_at_end, "live_end": live[n - 1], "live_peak": max(live[:n]),
        "samples": [(round(at[i], 1), round(rss[i], 1), live[i]) for i in range(0, n, 5)], "limits": proxy.limits.stats(), "core": proxy.statistics(),
        "flood": _calls((tmp / "mflood.out").read_text(errors="replace")),
        "legit": _calls((tmp / "legit.out").read_text(errors="replace")), "rc_legit": rc_legit,
        "rc_last": rc_last, "rc_uas": rc_uas,
    }
    await edge.close()
    silent.close()
    out["allocator"] = os.environ.get("PYTHONMALLOC") or "pymalloc"
    # Transactions still there at the end (none expected): which, in what state, with what timers.
    left = [*proxy.server_txs.values(), *proxy.client_txs.values()]
    out["left"] = {"server": len(proxy.server_txs), "client": len(proxy.client_txs), "sample": [
        [type(tx).__name__, tx.state, sorted(getattr(tx, "timers", None) or ())] for tx in left[:8]
    ]}
    return out


async def icmp(tmp: Path) -> dict[str, Any]:
    """A call toward DEAD: how long until the caller has its final (503 from the ICMP port
    unreachable, or Timer B's 408 without it)."""
    proxy, edge = await _start_proxy({})
    t0 = time.monotonic()
    caller = await _spawn(_sipp(tmp, "icmp", [
        "-sf", str(SCENARIOS / "uac_503.xml"), "-i", LEGIT, "-p", "5082", f"{PROXY[0]}:{PROXY[1]}",
        "-key", "uas", DEAD, "-m", "1", "-timeout", "10",
    ]), tmp, "icmp")
    rc = await _wait(caller, 20)  # (without the ICMP error only Timer B, 32 s, would end it)
    tm = proxy.statistics()["tm"]
    out = {"rc": rc, "seconds": round(time.monotonic() - t0, 2), "icmp_failures": tm["icmp_failures"],
           "loop": type(asyncio.get_running_loop()).__module__, "core": tm}
    await edge.close()
    return out


def _netns_main(argv: list[str]) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from proxyapp.transport import new_event_loop

    tmp = Path(tempfile.mkdtemp(prefix="floods-"))
    loop = new_event_loop()
    try:
        if argv[0] == "flood":
            result = loop.run_until_complete(asyncio.wait_for(flood(tmp), 150))
        elif argv[0] == "crack":
            result = loop.run_until_complete(asyncio.wait_for(crack(tmp, "--no-filter" not in argv), 150))
        elif argv[0] == "icmp":
            if "--uvloop" not in argv:
                loop.close()
                loop = asyncio.new_event_loop()
            result = loop.run_until_complete(asyncio.wait_for(icmp(tmp), 60))
        else:
            # memory [RATE SECONDS AFTER T1_MS] [--no-trim]; the defaults are the test's run.
            rate, seconds, after, t1 = ([int(a) for a in argv[1:5] if a.isdigit()] + [1000, 8, 45, 500][len(argv[1:5]):])[:4]
            coro = memory(tmp, "--no-trim" not in argv, rate, seconds, after, t1)
            result = loop.run_until_complete(asyncio.wait_for(coro, seconds + after + 60))
    finally:
        loop.close()
    print("RESULT " + json.dumps(result))


def _run_in_netns(*args: str, timeout: float = 170, env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private network namespace")
    for tool in ("sipp", "sipvicious_svmap", "sipvicious_svwar", "sipvicious_svcrack", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required (apt-get install sip-tester iproute2; pip install sipvicious)")
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}", **(env_extra or {}))
    res = subprocess.run(
        ["unshare", "-n", "--", sys.executable, "-m", "tests.proxy.test_floods", *args],
        capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env,
    )
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res.returncode == 0 and lines, f"driver failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return json.loads(lines[-1][7:])


def test_a_flood_is_banned_scanners_get_nothing_and_a_caller_at_20_cps_is_served():
    r = _run_in_netns("flood")
    info = json.dumps(r, indent=1)[:6000]
    ok, failed = r["legit"]
    assert ok >= 198 and ok / max(1, ok + failed) >= 0.99, info  # >= 99 % of the 200 calls
    assert FLOODER in r["banned"] and r["bans_after_flood"] >= 1, info
    assert LEGIT not in r["banned"] and "127.0.0.1" not in r["banned"], info
    assert r["flood"][0] == 0, info  # the flooder never completed a call
    assert r["limits"]["flood_dropped"] > 1000, info
    for scan in r["scans"]:
        assert scan["dropped"] > 0, info  # counted
        assert "SIP/2.0" not in scan["out"] and "| 127.0.0.1" not in scan["out"], info  # nothing found
    assert r["rc_last"] == 0, info  # the proxy keeps serving
    assert r["rss_mb"]["after"] < FLOOD_RSS_BOUND_MB, info


# The RSS bound of the password-guessing tests (MiB): measured 40-43 before and after.
CRACK_RSS_BOUND_MB = 120


def test_svcrack_is_banned_after_20_failed_guesses_and_finds_nothing():
    """A cracker that hides it is sipvicious (the scanner filter off): its 20th failed digest
    response bans it ([limits] auth_failures_ban), so the password, its 50th guess, stays
    unfound; the 20 calls/s caller alongside is served and the proxy serves on."""
    r = _run_in_netns("crack", "--no-filter")
    info = json.dumps(r, indent=1)[:6000]
    ok, failed = r["legit"]
    assert ok >= 198 and ok / max(1, ok + failed) >= 0.99, info
    assert r["banned"] == [CRACKER] and r["limits"]["auth_bans"] == 1, info
    assert r["cracker_failures"] == 20 and r["auth"]["authorized"] == 0, info
    assert f"pw{DICTIONARY_HIT:04d}" not in r["crack_out"] and "found nothing" in r["crack_out"], info
    assert r["limits"]["flood_dropped"] > 0, info  # its guesses after the ban, dropped unparsed
    assert r["rc_last"] == 0, info
    assert r["rss_mb"]["after"] < CRACK_RSS_BOUND_MB, info


def test_svcrack_as_it_ships_is_dropped_as_a_scanner():
    """svcrack says User-Agent: friendly-scanner: with the default scanner filter its REGISTERs
    are dropped unanswered and counted; it gets no challenge to guess against."""
    r = _run_in_netns("crack")
    info = json.dumps(r, indent=1)[:6000]
    ok, failed = r["legit"]
    assert ok >= 198 and ok / max(1, ok + failed) >= 0.99, info
    assert r["limits"]["scanner_dropped"] >= 1 and r["auth"]["challenges"] == 0, info
    assert r["cracker_failures"] == 0 and "found nothing" in r["crack_out"], info
    assert r["rc_last"] == 0, info
    assert r["rss_mb"]["after"] < CRACK_RSS_BOUND_MB, info


# The memory test's bounds (MiB): the peak of an 8 s flood at 1000 INVITE/s with the default
# T1 = 500 ms (Timer B 32 s, so all 16,000 transactions live at once), and what may stay once
# the drop has settled (none left, then the proxy's last collection and trim; at least 45 s
# after the flood began), per allocator ([limits] allocator, proxyapp.allocator). (With
# T1 = 100 ms the proxy's retransmissions toward the silent target, seven per INVITE in 6.4 s,
# saturated this 2-core machine at 1000/s under CI's load, and legitimate calls beside it failed.)
# On pymalloc a few hundred long-lived small objects keep many of its 1 MiB arenas; the bound
# holds that growth, it does not claim the memory comes back (measured: 41.6 MB before, 104 at
# the peak, 77 after; a CI run under load, before the settling compaction: 41.3, 136.9, 94.4).
# On malloc (what an exposed proxy runs on) malloc_trim gives back every free page, and the
# bound says the memory comes back (measured: 42.2, 107.4, 42.3).
# Longer floods: bench/README.md, "Memory after a flood".
MEMORY_PEAK_BOUND_MB = 400
MEMORY_KEPT_BOUND_MB = {"pymalloc": 60, "malloc": 15}
MEMORY_KEPT_BLOCKS = 5000


@pytest.mark.parametrize("allocator", ["malloc", "pymalloc"])
def test_memory_comes_back_after_a_flood_toward_a_silent_target(allocator):
    r = _run_in_netns("memory", timeout=150, env_extra={"PYTHONMALLOC": allocator})
    info = json.dumps(r, indent=1)[:6000]
    assert r["allocator"] == allocator, info
    # The three things every scenario asserts: legitimate calls alongside go through (at least
    # 99 %), the proxy still serves after it (one more call), and RSS stays bounded (below).
    ok, failed = r["legit"]
    assert ok >= 198 and ok / max(1, ok + failed) >= 0.99, info
    assert r["rc_last"] == 0, info
    assert r["live_end"] == 0 and r["live_peak"] > 5000, info
    assert r["limits"]["malloc_trims"] >= 1, info  # [limits] malloc_trim after the drop
    assert r["settled_at_end"] >= 1, info  # its last collection and trim came before rss_end
    assert r["rss_peak"] < MEMORY_PEAK_BOUND_MB, info
    assert r["rss_end"] - r["rss_before"] < MEMORY_KEPT_BOUND_MB[allocator], info
    if allocator == "pymalloc":
        # No leak: the objects alive (pymalloc's blocks) are back to their number before the
        # flood, within fewer than one per flooding INVITE (8000); what RSS keeps is arenas
        # pinned by a few hundred of them (measured: 315 more blocks).
        assert r["blocks_end"] - r["blocks_before"] < MEMORY_KEPT_BLOCKS, info


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_icmp_port_unreachable_fails_the_branch_at_once(loop):
    """RFC 3261 §18.4: the INVITE toward a port nobody listens on gets 503 within a second or
    two (the ICMP error, read from the raw socket), not Timer B's 408 after 32 s; on both loops."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    r = _run_in_netns("icmp", *(["--uvloop"] if loop == "uvloop" else []), timeout=90)
    assert r["loop"].startswith(loop) and r["rc"] == 0 and r["icmp_failures"] == 1, r
    assert r["seconds"] < 3, r  # not Timer B's 32 s
    assert r["core"]["5xx_transactions"] == 1, r  # the caller's INVITE ended with the 503


if __name__ == "__main__":
    _netns_main(sys.argv[1:])
