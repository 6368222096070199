"""End to end on loopback: a real proxyapp process running examples/auth_script.py, subscribers
added with the real ``proxyapp user`` command, SIPp clients answering the challenges
(-au/-ap, [authentication]) and baresip phones registering with a password."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..phones.baresip import establish, hang_up
from ..proxy.support import SRC, ProxyProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SCRIPT = ROOT / "examples" / "auth_script.py"


def auth_toml(extra: str = "") -> str:
    # The phones' domain is sip:127.0.0.1 (port 5060 implied): the alias makes it ours.
    return f"""script = "{SCRIPT}"
aliases = ["127.0.0.1:5060"]
[timers]
T1 = 100
fr_timeout = 2
fr_inv_timeout = 3
wt_timer = 1
[auth]
db_url = "subs.db"
refresh_interval = 0.2
{extra}
"""


def user(proxy: ProxyProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``proxyapp user --config <the proxy's config> ARGS`` in the proxy's directory."""
    env = dict(os.environ, PYTHONPATH=str(SRC) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
    return subprocess.run([sys.executable, "-m", "proxyapp", "user", "--config", str(proxy.config), *args],
                          cwd=proxy.config.parent, env=env, capture_output=True, text=True, timeout=30)


def add_users(proxy: ProxyProcess, *pairs: tuple[str, str]) -> None:
    for who, password in pairs:
        r = user(proxy, "add", who, password)
        assert r.returncode == 0, r.stderr
    listed = user(proxy, "list").stdout.split()
    assert sorted(listed) == sorted(w for w, _ in pairs)
    # The running proxy reloads the table every refresh_interval (0.2 s).
    deadline = time.monotonic() + 5
    want = f"{len(pairs)} subscribers loaded"
    while want not in proxy.log():
        assert time.monotonic() < deadline, proxy.log()
        time.sleep(0.05)


def _check(result, proxy, sipp, what: str, rc: int = 0) -> None:
    out = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    detail = f"{what}: rc={result.returncode}\n{out[-3000:]}\n{sipp.logs()}\n==== proxy\n{proxy.log()[-6000:]}"
    assert result.returncode == rc, detail
    assert "Traceback" not in proxy.log(), detail


# SIPp 3.6 answers only MD5 and only the first challenge ("createAuthHeader: authentication must use
# MD5 or AKAv1-MD5" for the default SHA-256 first): such clients need MD5 listed first.
@pytest.mark.parametrize("algorithms", [["MD5", "SHA-256"], ["MD5"]], ids=["md5+sha256", "md5"])
def test_sipp_register_with_digest_and_replay_refused(proxy_factory, sipp, algorithms):
    proxy = proxy_factory(auth_toml(f"algorithms = {algorithms!r}".replace("'", '"')))
    add_users(proxy, ("sipp@127.0.0.1", "s3cret pass"))
    res = sipp.uac(str(SCENARIOS / "uac_auth_register.xml"), proxy.port, "unused",
                   extra=["-s", "sipp", "-au", "sipp", "-ap", "s3cret pass"])
    _check(res, proxy, sipp, "REGISTER with digest")
    assert "invalid password" not in proxy.log()
    # Someone who captured the second REGISTER replays its credentials (nc=00000001) in a
    # request of their own: refused with stale=true. The very same datagram again (a
    # retransmission) passes authentication and reaches the registrar, which refuses it for its
    # CSeq (the third REGISTER, CSeq 3, was saved since: RFC 3261 §10.3 step 7).
    trace = next(proxy.config.parent.glob("uac_auth_register*messages.log")).read_text(errors="replace")
    sent = [m for m in trace.split("message sent") if "Authorization: Digest" in m]
    assert len(sent) == 2, trace
    register2 = sent[0].split("\n\n", 1)[1].strip("\n").replace("\r\n", "\n").split("\n\n")[0]
    datagram = register2.replace("\n", "\r\n").encode() + b"\r\n\r\n"
    port = int(re.search(r"Via: SIP/2.0/UDP 127.0.0.1:(\d+)", register2).group(1))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # SIPp has exited: its port is free, and the answers come back here
        s.settimeout(5)
        s.sendto(datagram, ("127.0.0.1", proxy.port))
        assert s.recv(65535).startswith(b"SIP/2.0 400 Bad Request - out-of-order CSeq"), proxy.log()
        forged = datagram.replace(b"CSeq: 2 REGISTER", b"CSeq: 9 REGISTER").replace(b";branch=", b";branch=z9hG4bKreplay")
        s.sendto(forged, ("127.0.0.1", proxy.port))
        answer = s.recv(65535)
    assert answer.startswith(b"SIP/2.0 401 "), answer
    assert answer.count(b"stale=true") == len(algorithms), answer
    assert "REGISTER from 127.0.0.1: nonce replayed, challenged" in proxy.log()


def test_sipp_register_with_a_wrong_password(proxy_factory, sipp):
    proxy = proxy_factory(auth_toml('algorithms = ["MD5"]'))
    add_users(proxy, ("sipp@127.0.0.1", "right"))
    res = sipp.uac(str(SCENARIOS / "uac_auth_register_bad.xml"), proxy.port, "unused",
                   extra=["-s", "sipp", "-au", "sipp", "-ap", "wrong"])
    _check(res, proxy, sipp, "REGISTER with a wrong password")
    assert "REGISTER from 127.0.0.1: invalid password, challenged" in proxy.log()


def test_sipp_call_with_proxy_authentication(proxy_factory, sipp):
    proxy = proxy_factory(auth_toml('algorithms = ["MD5"]'))
    add_users(proxy, ("sipp@127.0.0.1", "callpass"))
    uas_port = free_port()
    uas = sipp.uas("uas_call.xml", uas_port)
    res = sipp.uac(str(SCENARIOS / "uac_auth_call.xml"), proxy.port, f"127.0.0.1:{uas_port}",
                   extra=["-s", "sipp", "-au", "sipp", "-ap", "callpass"])
    _check(res, proxy, sipp, "INVITE with proxy authentication")
    assert sipp.wait(uas) == 0, sipp.logs()
    # The callee got the INVITE without the credentials the proxy consumed.
    uas_msgs = "".join(p.read_text(errors="replace") for p in proxy.config.parent.glob("uas_call*messages.log"))
    assert "INVITE sip:callee@" in uas_msgs, sipp.logs()
    assert "Proxy-Authorization" not in uas_msgs


MD5_FOR_BARESIP = '[script_params]\nmd5_only = ["baresip v1.0"]\n'


def test_baresip_registers_and_calls_with_a_password(proxy_factory, phones):
    """Two phones register with their passwords (401, then 200), alice calls bob (407, then the
    call is set up through the proxy, the credentials consumed), a phone with a wrong password
    never registers. [auth] offers SHA-256 and MD5; the example script challenges baresip 1.0
    (by its User-Agent) with MD5 only (see the next test)."""
    proxy = proxy_factory(auth_toml() + MD5_FOR_BARESIP)
    phones.attach(f"proxyapp ({proxy.log_path})", proxy.log)
    add_users(proxy, ("alice@127.0.0.1", "alice-pw"), ("bob@127.0.0.1", "bob-pw"))
    to = f"127.0.0.1:{proxy.port}"
    a = phones.phone("alice", proxy=to, password="alice-pw")
    b = phones.phone("bob", proxy=to, password="bob-pw", transport="tcp")
    a.register()
    b.register()
    assert proxy.log().count("REGISTER from 127.0.0.1: no credentials, challenged") >= 2, phones.report()

    establish(a, b, b.aor)
    assert "INVITE from 127.0.0.1: no credentials, challenged" in proxy.log(), phones.report()
    incoming = [blk for blk in b.trace() if len(blk) > 1 and blk[1].startswith("INVITE ")]
    assert incoming and not any(x.lower().startswith("proxy-authorization") for blk in incoming for x in blk)
    hang_up(a, b)

    c = phones.phone("carol", proxy=to, password="wrong")
    with pytest.raises(AssertionError, match="REGISTER_FAIL"):
        c.register(timeout=10)
    assert "REGISTER from 127.0.0.1: invalid user, challenged" in proxy.log(), phones.report()
    assert "Traceback" not in proxy.log(), phones.report()


def test_baresip_1_0_gives_up_on_a_sha256_challenge(proxy_factory, phones):
    """Pinned client limitation: baresip 1.0 (libre) stops at the first challenge whose algorithm
    it does not know instead of answering the MD5 one after it (RFC 8760 §2.4 says to skip it).
    Should this start passing registration, baresip learnt SHA-256 or to skip: drop md5_only."""
    proxy = proxy_factory(auth_toml())
    phones.attach(f"proxyapp ({proxy.log_path})", proxy.log)
    add_users(proxy, ("alice@127.0.0.1", "alice-pw"))
    a = phones.phone("alice", proxy=f"127.0.0.1:{proxy.port}", password="alice-pw")
    with pytest.raises(AssertionError, match="REGISTER_FAIL 'Function not implemented'"):
        a.register()
