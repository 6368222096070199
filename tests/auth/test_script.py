"""examples/auth_script.py through the sans-IO core (tests/proxy/harness): 401 with both
challenges, REGISTER with good and bad credentials, 407 for an INVITE from our users, a replayed
nonce count refused, stale nonces, check_to / check_from, consume_credentials."""

from __future__ import annotations

from pathlib import Path

import fastsip
import pytest

from proxyapp.auth import digest
from proxyapp.script import Script

from ..proxy.harness import Harness, sends
from ..proxy.seed import PROXY_IP

ROOT = Path(__file__).resolve().parents[2]
PHONE = ("10.0.0.31", 5060)
CALLEE = ("10.0.0.32", 5062)


def register(user="alice", call_id="reg1", cseq=1, auth_hdr="", aor_user=None, branch=None):
    aor_user = aor_user or user
    return (
        f"REGISTER sip:{PROXY_IP} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PHONE[0]}:{PHONE[1]};branch={branch or f'z9hG4bKr{call_id}{cseq}'};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{aor_user}@{PROXY_IP}>;tag=r{call_id}\r\n"
        f"To: <sip:{aor_user}@{PROXY_IP}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{aor_user}@{PHONE[0]}:{PHONE[1]}>;expires=3600\r\n"
        f"{auth_hdr}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def invite(from_user="alice", to_user="bob", cseq=1, auth_hdr="", from_domain=PROXY_IP, branch="z9hG4bKi1"):
    return (
        f"INVITE sip:{to_user}@{PROXY_IP} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PHONE[0]}:{PHONE[1]};branch={branch}{cseq}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{from_user}@{from_domain}>;tag=c1\r\n"
        f"To: <sip:{to_user}@{PROXY_IP}>\r\n"
        "Call-ID: call-1\r\n"
        f"CSeq: {cseq} INVITE\r\n"
        f"{auth_hdr}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def credentials(challenge, method, uri, user="alice", password="wonderland", nc=1, realm=None):
    p = digest._params(challenge.partition(" ")[2])
    alg, realm = p["algorithm"], realm or p["realm"]
    ha1 = digest.ha1(alg, user, realm, password)
    ncs = f"{nc:08x}"
    resp = digest.response(alg, ha1, p["nonce"], method, uri, "auth", ncs, "cn0")
    return (f'Digest username="{user}", realm="{realm}", nonce="{p["nonce"]}", uri="{uri}", '
            f'response="{resp}", algorithm={alg}, qop=auth, nc={ncs}, cnonce="cn0"')


@pytest.fixture
def h(tmp_path):
    h = Harness(Script.load(str(ROOT / "examples" / "auth_script.py")), auth={"db_url": str(tmp_path / "subs.db")})
    auth = h.proxy.auth
    auth.store.add("alice", PROXY_IP, "wonderland")
    auth.store.add("bob", PROXY_IP, "builder")
    auth.store.load_sync()
    return h


def only(actions):
    s = sends(actions)
    assert len(s) == 1, s
    return fastsip.parse(s[0].data)


def test_register_is_challenged_with_sha256_then_md5(h):
    r = only(h.rx(register(), PHONE))
    assert (r.status, r.reason) == (401, "Unauthorized")
    ch = r.headers.getall("WWW-Authenticate")
    assert [digest._params(c.partition(" ")[2])["algorithm"] for c in ch] == ["SHA-256", "MD5"]
    assert all(f'realm="{PROXY_IP}"' in c and 'qop="auth"' in c and "stale" not in c for c in ch)
    assert r.to.tag is not None
    assert h.proxy.auth.stats()["challenges"] == 1
    assert not h.proxy.script.services.location.get(f"sip:alice@{PROXY_IP}", 1000.0)


@pytest.mark.parametrize("which", [0, 1], ids=["SHA-256", "MD5"])
def test_register_with_good_credentials_is_saved(h, which):
    ch = only(h.rx(register(), PHONE)).headers.getall("WWW-Authenticate")[which]
    cred = credentials(ch, "REGISTER", f"sip:{PROXY_IP}")
    r = only(h.rx(register(cseq=2, auth_hdr=f"Authorization: {cred}\r\n"), PHONE))
    assert r.status == 200
    assert h.proxy.script.services.location.get(f"sip:alice@{PROXY_IP}", 1000.0)
    assert h.proxy.auth.stats()["authorized"] == 1


def test_register_with_a_bad_password_is_challenged_again_and_counted(h):
    ch = only(h.rx(register(), PHONE)).headers.getall("WWW-Authenticate")[0]
    cred = credentials(ch, "REGISTER", f"sip:{PROXY_IP}", password="guess")
    r = only(h.rx(register(cseq=2, auth_hdr=f"Authorization: {cred}\r\n"), PHONE))
    assert r.status == 401 and all("stale" not in c for c in r.headers.getall("WWW-Authenticate"))
    assert h.proxy.auth.failures(PHONE[0]) == 1
    assert not h.proxy.script.services.location.get(f"sip:alice@{PROXY_IP}", 1000.0)


def test_register_for_someone_else_is_forbidden(h):
    ch = only(h.rx(register(aor_user="bob"), PHONE)).headers.getall("WWW-Authenticate")[0]
    cred = credentials(ch, "REGISTER", f"sip:{PROXY_IP}")  # alice's credentials, bob's AOR
    r = only(h.rx(register(aor_user="bob", cseq=2, auth_hdr=f"Authorization: {cred}\r\n"), PHONE))
    assert (r.status, r.reason) == (403, "Forbidden auth ID")


def test_replayed_nonce_count_is_refused_but_a_retransmission_is_not(h):
    ch = only(h.rx(register(), PHONE)).headers.getall("WWW-Authenticate")[0]
    hdr = f"Authorization: {credentials(ch, 'REGISTER', f'sip:{PROXY_IP}')}\r\n"
    assert only(h.rx(register(cseq=2, auth_hdr=hdr), PHONE)).status == 200
    # The same request again (a UDP retransmission of a statelessly answered REGISTER): fine.
    assert only(h.rx(register(cseq=2, auth_hdr=hdr), PHONE)).status == 200
    # The same (nonce, nc) in another request: a replay, challenged with stale=true.
    r = only(h.rx(register(cseq=3, auth_hdr=hdr), PHONE))
    assert r.status == 401 and all("stale=true" in c for c in r.headers.getall("WWW-Authenticate"))
    s = h.proxy.auth.stats()
    assert (s["authorized"], s["replayed"]) == (2, 1)
    # The next count on the same nonce is fine.
    hdr2 = f"Authorization: {credentials(ch, 'REGISTER', f'sip:{PROXY_IP}', nc=2)}\r\n"
    assert only(h.rx(register(cseq=4, auth_hdr=hdr2), PHONE)).status == 200


def test_expired_nonce_gets_stale_true(h):
    ch = only(h.rx(register(), PHONE)).headers.getall("WWW-Authenticate")[1]
    h.proxy.auth.clock = lambda: 1031.0
    hdr = f"Authorization: {credentials(ch, 'REGISTER', f'sip:{PROXY_IP}')}\r\n"
    r = only(h.rx(register(cseq=2, auth_hdr=hdr), PHONE))
    assert r.status == 401
    ch2 = r.headers.getall("WWW-Authenticate")
    assert all("stale=true" in c for c in ch2) and h.proxy.auth.stats()["stale"] == 1
    hdr = f"Authorization: {credentials(ch2[0], 'REGISTER', f'sip:{PROXY_IP}')}\r\n"
    assert only(h.rx(register(cseq=3, auth_hdr=hdr), PHONE)).status == 200


def test_invite_from_our_user_gets_407_then_goes_through_without_credentials(h):
    # bob is registered (authenticated) first.
    ch = only(h.rx(register("bob"), CALLEE)).headers.getall("WWW-Authenticate")[0]
    bob = credentials(ch, "REGISTER", f"sip:{PROXY_IP}", user="bob", password="builder")
    h.rx(register("bob", cseq=2, auth_hdr=f"Authorization: {bob}\r\n"), CALLEE)

    r = only(h.rx(invite(), PHONE))
    assert (r.status, r.reason) == (407, "Proxy Authentication Required")
    ch = r.headers.getall("Proxy-Authenticate")
    assert len(ch) == 2 and "algorithm=SHA-256" in ch[0] and "algorithm=MD5" in ch[1]
    h.rx(f"ACK sip:bob@{PROXY_IP} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.31:5060;branch=z9hG4bKi11\r\n"
         f"From: <sip:alice@{PROXY_IP}>;tag=c1\r\nTo: <sip:bob@{PROXY_IP}>;tag={r.to.tag}\r\nCall-ID: call-1\r\n"
         "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n".encode(), PHONE)

    upstream = 'Proxy-Authorization: Digest username="a", realm="carrier.net", nonce="n", uri="sip:x", response="0"\r\n'
    cred = credentials(ch[0], "INVITE", f"sip:bob@{PROXY_IP}")
    s = sends(h.rx(invite(cseq=2, auth_hdr=upstream + f"Proxy-Authorization: {cred}\r\n"), PHONE))
    fwd = [fastsip.parse(x.data) for x in s if x.dest.addr == CALLEE]
    assert len(fwd) == 1, s
    # consume_credentials removed ours and kept the one for another realm.
    assert fwd[0].headers.getall("Proxy-Authorization") == [upstream.split(": ", 1)[1].strip()]
    assert h.proxy.auth.stats()["authorized"] == 2


def test_invite_with_someone_elses_credentials_is_forbidden(h):
    ch = only(h.rx(invite(from_user="bob"), PHONE)).headers.getall("Proxy-Authenticate")[0]
    cred = credentials(ch, "INVITE", f"sip:bob@{PROXY_IP}")
    r = only(h.rx(invite(from_user="bob", cseq=2, auth_hdr=f"Proxy-Authorization: {cred}\r\n"), PHONE))
    assert (r.status, r.reason) == (403, "Forbidden auth ID")


def test_invite_from_a_foreign_domain_is_not_challenged(h):
    s = sends(h.rx(invite(from_domain="carrier.example"), PHONE))
    assert [fastsip.parse(x.data).status for x in s] == [404]  # not challenged: bob is not registered


def test_no_auth_table_means_a_500_not_a_crash():
    h = Harness(Script.load(str(ROOT / "examples" / "auth_script.py")))
    assert h.proxy.auth is None
    assert only(h.rx(register(), PHONE)).status == 500


def test_a_listed_user_agent_is_challenged_with_md5_only(tmp_path):
    h = Harness(Script.load(str(ROOT / "examples" / "auth_script.py")), auth={"db_url": str(tmp_path / "s.db")},
                script_params={"md5_only": ["OldPhone/"]})
    old = register(auth_hdr="User-Agent: OldPhone/1.2\r\n")
    ch = only(h.rx(old, PHONE)).headers.getall("WWW-Authenticate")
    assert len(ch) == 1 and "algorithm=MD5" in ch[0]
    ch = only(h.rx(register(call_id="r2", auth_hdr="User-Agent: NewPhone/2\r\n"), PHONE)).headers.getall(
        "WWW-Authenticate")
    assert len(ch) == 2


def test_challenge_algorithms_must_be_configured(tmp_path):
    h = Harness(Script.load(str(ROOT / "examples" / "auth_script.py")),
                auth={"db_url": str(tmp_path / "s.db"), "algorithms": ["SHA-256"]}, script_params={"md5_only": [""]})
    assert only(h.rx(register(), PHONE)).status == 500  # www_challenge(algorithms="MD5"): ScriptError


def test_example_configuration_checks(capsys):
    from proxyapp.__main__ import main
    from proxyapp.auth import AuthConfig
    from proxyapp.config import Config

    cfg = Config.load(ROOT / "examples" / "auth.toml")
    assert cfg.script == str(ROOT / "examples" / "auth_script.py")
    auth = AuthConfig.from_dict(cfg.auth)
    defaults = AuthConfig.from_dict({})
    for key in ("realm", "db_url", "db_table", "algorithms", "qop", "nonce_expire", "refresh_interval",
                "max_nonces", "max_sources"):
        assert getattr(auth, key) == getattr(defaults, key), key  # the example shows the defaults
    assert main(["--config", str(ROOT / "examples" / "auth.toml"), "--check"]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_a_reload_keeps_the_auth_service_and_its_nonces(h):
    from proxyapp.config import Config

    ch = only(h.rx(register(), PHONE)).headers.getall("WWW-Authenticate")[0]
    auth = h.proxy.auth
    new = Config.from_dict({"listen": [str(x) for x in h.cfg.listen], "auth": {"realm": "ignored.example"}})
    h.proxy.reconfigure(new, Script.load(str(ROOT / "examples" / "auth_script.py")))
    assert h.proxy.script.services.auth is auth
    hdr = f"Authorization: {credentials(ch, 'REGISTER', f'sip:{PROXY_IP}')}\r\n"
    assert only(h.rx(register(cseq=2, auth_hdr=hdr), PHONE)).status == 200


def test_a_password_guesser_is_banned_after_auth_failures_ban_failures(tmp_path):
    # [limits] auth_failures_ban: svcrack's way (one REGISTER per guess) ends with a ban, which
    # the edge applies to every later datagram from that source (Limits.admit).
    h = Harness(Script.load(str(ROOT / "examples" / "auth_script.py")), auth={"db_url": str(tmp_path / "subs.db")},
                limits={"auth_failures_ban": 3, "trusted": []})
    h.proxy.auth.store.add("alice", PROXY_IP, "wonderland")
    h.proxy.auth.store.load_sync()
    limits = h.proxy.limits
    for guess in range(3):
        assert limits.admit(PHONE[0])
        chal = only(h.rx(register(call_id=f"g{guess}"), PHONE)).headers.getall("WWW-Authenticate")[-1]
        auth = credentials(chal, "REGISTER", f"sip:{PROXY_IP}", password=f"guess{guess}")
        r = only(h.rx(register(call_id=f"g{guess}", cseq=2, auth_hdr=f"Authorization: {auth}\r\n"), PHONE))
        assert r.status == 401
    assert h.proxy.auth.failures(PHONE[0]) == 3
    assert limits.banned() == [PHONE[0]] and not limits.admit(PHONE[0])
    assert (limits.stats()["auth_bans"], limits.stats()["bans"]) == (1, 1)
    # A trusted source is never banned, however often it fails.
    h2 = Harness(Script.load(str(ROOT / "examples" / "auth_script.py")), auth={"db_url": str(tmp_path / "s2.db")},
                 limits={"auth_failures_ban": 1, "trusted": [f"{PHONE[0]}/32"]})
    h2.proxy.limits.auth_failed(PHONE[0], 5)
    assert h2.proxy.limits.banned() == [] and h2.proxy.limits.admit(PHONE[0])
