"""Digest arithmetic against the RFCs' published examples; nonces (expiry, tampering, replay);
the service's codes, failure counting and bounds. No I/O beyond a SQLite file in tmp_path."""

from __future__ import annotations

import hmac
from unittest import mock

import pytest

from proxyapp.auth import (
    AUTHORIZED, GENERIC_ERROR, INVALID_PASSWORD, INVALID_USER, NO_CREDENTIALS, NONCE_REPLAYED, STALE_NONCE,
    Auth, AuthConfig, SubscriberStore,
)
from proxyapp.auth import digest
from proxyapp.auth.nonce import FRESH, INVALID, REPLAYED, RETRANSMISSION, STALE, VALID, NonceCounts, Nonces
from proxyapp.config import Config, ConfigError

# ------------------------------------------------------------------ the RFCs' examples


def test_rfc2617_section_3_5_md5():
    # RFC 2617 §3.5: Mufasa / "Circle Of Life" in testrealm@host.com, GET /dir/index.html.
    ha1 = digest.ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    got = digest.response("MD5", ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "GET", "/dir/index.html",
                          "auth", "00000001", "0a4f113b")
    assert got == "6629fae49393a05397450978507c4ef1"


RFC7616 = dict(nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", method="GET", uri="/dir/index.html",
               qop="auth", nc="00000001", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")


@pytest.mark.parametrize("alg, expected", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_section_3_9_1(alg, expected):
    # RFC 7616 §3.9.1 (the algorithms RFC 8760 brings to SIP): Mufasa / "Circle of Life".
    ha1 = digest.ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life")
    assert digest.response(alg, ha1, **RFC7616) == expected


def test_rfc2069_no_qop():
    ha1 = digest.ha1("MD5", "u", "r", "p")
    ha2 = digest.h("MD5", "REGISTER:sip:r")
    assert digest.response("MD5", ha1, "n", "REGISTER", "sip:r", "") == digest.h("MD5", f"{ha1}:n:{ha2}")


def test_compare_is_constant_time_and_case_insensitive():
    with mock.patch("proxyapp.auth.digest.hmac.compare_digest", wraps=hmac.compare_digest) as spy:
        assert digest.matches("abcdef", "ABCDEF")
        assert not digest.matches("abcdef", "abcdee")
        assert not digest.matches("abcdef", "\u00e9")  # non-ASCII: no exception, no match
    assert spy.call_count == 3


def test_parse_credentials_quoting():
    c = digest.parse_credentials(
        'Digest username="a\\"b", realm="r, x", nonce="n", uri="sip:r", response="00", '
        'algorithm=SHA-256, qop=auth, nc=00000002, cnonce="c", opaque=""')
    assert c is not None
    assert (c.username, c.realm, c.algorithm, c.qop, c.nc, c.cnonce, c.opaque) == (
        'a"b', "r, x", "SHA-256", "auth", "00000002", "c", "")
    assert digest.parse_credentials('Basic dXNlcjpwYXNz') is None
    assert digest.parse_credentials('Digest username="a", realm="r"') is None  # no response


def test_challenge_text():
    assert digest.challenge("r", "N", "SHA-256", "auth", stale=True) == (
        'Digest realm="r", nonce="N", qop="auth", algorithm=SHA-256, stale=true')
    assert digest.challenge("r", "N", "MD5", "") == 'Digest realm="r", nonce="N", algorithm=MD5'


# ------------------------------------------------------------------ nonces


def test_nonce_valid_stale_tampered_foreign():
    n = Nonces("s" * 32, expire=30)
    nonce = n.issue("example.com", 1000.0)
    assert len(nonce) == 44
    assert n.check(nonce, "example.com", 1000.0)[:1] == (VALID,)
    assert n.check(nonce, "example.com", 1030.0)[0] == VALID
    assert n.check(nonce, "example.com", 1030.1)[0] == STALE
    assert n.check(nonce, "other.com", 1000.0)[0] == INVALID  # bound to the realm
    assert Nonces("t" * 32, 30).check(nonce, "example.com", 1000.0)[0] == INVALID  # another server
    raw = bytearray(nonce.encode())
    raw[3] = ord("A") if raw[3] != ord("A") else ord("B")  # the issue time changed
    assert n.check(raw.decode(), "example.com", 1000.0)[0] == INVALID
    assert n.check("garbage!", "example.com", 1000.0)[0] == INVALID
    assert n.check(n.issue("example.com", 2000.0), "example.com", 1000.0)[0] == INVALID  # from the future
    assert n.check(n.issue("r", 1.0, qop=False), "r", 1.0) == (VALID, 1.0, False)


def test_nonce_counts_window_and_retransmission():
    c = NonceCounts(expire=30, max_nonces=10)
    assert c.use("n", 0.0, 1, "k1", 1.0) == FRESH
    assert c.use("n", 0.0, 1, "k1", 1.0) == RETRANSMISSION
    assert c.use("n", 0.0, 1, "other", 1.0) == REPLAYED
    assert c.use("n", 0.0, 3, "k3", 1.0) == FRESH
    assert c.use("n", 0.0, 2, "k2", 1.0) == FRESH  # out of order, inside the window
    assert c.use("n", 0.0, 2, "k9", 1.0) == REPLAYED
    assert c.use("n", 0.0, 100, "k100", 1.0) == FRESH
    assert c.use("n", 0.0, 30, "k30", 1.0) == REPLAYED  # fell out of the window


def test_nonce_counts_bounded():
    c = NonceCounts(expire=30, max_nonces=100)
    for i in range(1000):
        assert c.use(f"n{i}", float(i) / 100, 1, i, 10.0) == FRESH
    assert len(c) == 100
    # An early nonce pushed out cannot be replayed by coming back.
    assert c.use("n5", 0.05, 1, "again", 10.0) == REPLAYED
    # Expired entries go on their own.
    assert c.use("late", 100.0, 1, "x", 100.0) == FRESH
    assert len(c) == 1


# ------------------------------------------------------------------ the service


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def auth(tmp_path):
    cfg = AuthConfig.from_dict({"db_url": str(tmp_path / "subs.db"), "max_sources": 3})
    store = SubscriberStore.for_config(cfg)
    store.add("alice", "example.com", "wonderland")
    store.load_sync()
    return Auth(cfg, store, clock=Clock())


def answer(auth, challenge, user="alice", password="wonderland", method="REGISTER", uri="sip:example.com",
           nc="00000001", cnonce="c0ffee", realm=None, qop="auth", extra=""):
    """What a client sends back for one challenge value."""
    p = digest._params(challenge.partition(" ")[2])
    alg = p["algorithm"]
    realm = realm or p["realm"]
    ha1 = digest.ha1(alg, user, realm, password)
    resp = digest.response(alg, ha1, p["nonce"], method, uri, qop, nc, cnonce)
    q = f", qop={qop}, nc={nc}, cnonce=\"{cnonce}\"" if qop else ""
    return (f'Digest username="{user}", realm="{realm}", nonce="{p["nonce"]}", uri="{uri}", '
            f'response="{resp}", algorithm={alg}{q}{extra}')


def test_challenge_sha256_first_one_nonce(auth):
    ch = auth.challenge("example.com")
    assert [c.split("algorithm=")[1].split(",")[0] for c in ch] == ["SHA-256", "MD5"]
    assert len({digest._params(c)["nonce"] for c in ch}) == 1
    assert all('qop="auth"' in c for c in ch)


@pytest.mark.parametrize("which", [0, 1])
def test_authorize_both_algorithms(auth, which):
    ch = auth.challenge("example.com")[which]
    r = auth.authorize([answer(auth, ch)], "example.com", "REGISTER", "192.0.2.1", "req1")
    assert (r.code, r.user, r.index) == (AUTHORIZED, "alice", 0)
    assert auth.stats()["authorized"] == 1


def test_codes(auth):
    ch = auth.challenge("example.com")[0]
    ip = "192.0.2.7"
    assert auth.authorize([], "example.com", "REGISTER", ip).code == NO_CREDENTIALS
    other_realm = answer(auth, ch, realm="other.org")
    assert auth.authorize([other_realm], "example.com", "REGISTER", ip).code == NO_CREDENTIALS
    assert auth.authorize([answer(auth, ch, password="x")], "example.com", "REGISTER", ip).code == INVALID_PASSWORD
    assert auth.authorize([answer(auth, ch, user="mallory")], "example.com", "REGISTER", ip).code == INVALID_USER
    # The method is in the hash: a REGISTER's answer does not authorize an INVITE.
    assert auth.authorize([answer(auth, ch)], "example.com", "INVITE", ip).code == INVALID_PASSWORD
    bad_alg = answer(auth, ch).replace("algorithm=SHA-256", "algorithm=SHA-512-256")
    assert auth.authorize([bad_alg], "example.com", "REGISTER", ip).code == GENERIC_ERROR
    assert auth.authorize(['Digest username="alice"'], "example.com", "REGISTER", ip).code == NO_CREDENTIALS
    assert auth.authorize(['Digest username="alice", realm="example.com"'], "example.com", "REGISTER",
                          ip).code == GENERIC_ERROR
    # A client may not drop qop (and the nonce count) from an answer to a qop challenge.
    assert auth.authorize([answer(auth, ch, qop="")], "example.com", "REGISTER", ip).code == GENERIC_ERROR
    assert auth.failures(ip) == 6
    assert auth.stats()["no_credentials"] == 3
    assert auth.authorize([answer(auth, ch)], "example.com", "REGISTER", ip, "ok").code == AUTHORIZED


def test_no_qop_challenge_serves_one_request(auth):
    ch = auth.challenge("example.com", qop="")[1]
    assert "qop" not in ch
    a = answer(auth, ch, qop="")
    assert auth.authorize([a], "example.com", "REGISTER", "ip", "k1").code == AUTHORIZED
    assert auth.authorize([a], "example.com", "REGISTER", "ip", "k1").code == AUTHORIZED  # retransmission
    assert auth.authorize([a], "example.com", "REGISTER", "ip", "k2").code == NONCE_REPLAYED
    with pytest.raises(ValueError):
        auth.challenge("example.com", qop="auth-int")


def test_stale_and_replay(auth):
    ch = auth.challenge("example.com")[0]
    a1 = answer(auth, ch)
    assert auth.authorize([a1], "example.com", "REGISTER", "ip", "k1").code == AUTHORIZED
    r = auth.authorize([a1], "example.com", "REGISTER", "ip", "k2")
    assert r.code == NONCE_REPLAYED and r.stale
    assert auth.authorize([answer(auth, ch, nc="00000002")], "example.com", "REGISTER", "ip", "k3").code == AUTHORIZED
    auth.clock.t += 31
    r = auth.authorize([answer(auth, ch, nc="00000003")], "example.com", "REGISTER", "ip", "k4")
    assert r.code == STALE_NONCE and r.stale
    # Stale with a wrong password is a wrong password (the user must be asked again).
    assert auth.authorize([answer(auth, ch, nc="00000004", password="no")], "example.com", "REGISTER", "ip",
                          "k5").code == INVALID_PASSWORD
    # A right answer to a nonce that is not ours (another secret, a restart): stale, not a failure.
    other = Auth(auth.cfg.__class__.from_dict({"db_url": auth.store.db_url}), auth.store, clock=auth.clock)
    ch2 = other.challenge("example.com")[0]
    assert auth.authorize([answer(auth, ch2)], "example.com", "REGISTER", "ip", "k6").code == STALE_NONCE
    s = auth.stats()
    assert (s["stale"], s["replayed"], s["failed"]) == (2, 1, 2)
    assert auth.failures("ip") == 2


def test_failure_counts_bounded_and_hook(auth):
    seen = []
    auth.on_failure = lambda ip, n: seen.append((ip, n))
    ch = auth.challenge("example.com")[0]
    bad = answer(auth, ch, password="guess")
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.3", "10.0.0.4"]:
        assert auth.authorize([bad], "example.com", "REGISTER", ip).code == INVALID_PASSWORD
    assert seen[2] == ("10.0.0.1", 2)
    # max_sources = 3: the least recently failing source (10.0.0.2) was dropped.
    assert auth.failure_counts() == {"10.0.0.1": 2, "10.0.0.3": 1, "10.0.0.4": 1}
    assert auth.failures("10.0.0.2") == 0
    assert auth.stats()["failing_sources"] == 3


def test_second_credential_for_our_realm(auth):
    ch = auth.challenge("example.com")[1]
    other = 'Digest username="x", realm="upstream.net", nonce="n", uri="sip:x", response="0"'
    r = auth.authorize([other, answer(auth, ch)], "example.com", "REGISTER", "ip", "k")
    assert (r.code, r.index) == (AUTHORIZED, 1)


# ------------------------------------------------------------------ configuration


def test_config_defaults_and_errors(tmp_path):
    cfg = AuthConfig.from_dict({})
    assert (cfg.algorithms, cfg.nonce_expire, cfg.db_url, cfg.realm, cfg.qop) == (
        ["SHA-256", "MD5"], 30.0, "proxyapp-subscribers.db", "", "auth")
    assert len(cfg.secret) == 64 and cfg.secret != AuthConfig.from_dict({}).secret
    assert AuthConfig.from_dict({"algorithms": ["md5"]}).algorithms == ["MD5"]
    for bad, key in [({"algorithms": ["SHA-512"]}, "auth.algorithms"), ({"nonce_expire": 0}, "auth.nonce_expire"),
                     ({"secret": "short"}, "auth.secret"), ({"qop": "auth-int"}, "auth.qop"),
                     ({"db_table": "x; drop"}, "auth.db_table"), ({"nope": 1}, "auth.nope"),
                     ({"realm": 'a"b'}, "auth.realm"), ({"max_nonces": True}, "auth.max_nonces")]:
        with pytest.raises(ConfigError) as e:
            AuthConfig.from_dict(bad)
        assert e.value.key == key
    assert Config.from_dict({"auth": {"realm": "example.com"}}).auth == {"realm": "example.com"}
    with pytest.raises(ConfigError):
        Config.from_dict({"auth": "x"})


def test_authorize_compares_response_and_nonce_mac_in_constant_time(auth):
    ch = auth.challenge("example.com")[0]
    with mock.patch("hmac.compare_digest", wraps=hmac.compare_digest) as spy:
        assert auth.authorize([answer(auth, ch)], "example.com", "REGISTER", "ip", "k").code == AUTHORIZED
    assert spy.call_count == 2  # the response, then the nonce's MAC
    kinds = sorted(type(c.args[0]).__name__ for c in spy.call_args_list)
    assert kinds == ["bytes", "bytes"]
