"""proxyapp.permissions and its verbs: the [permissions] table (OpenSIPS permissions' address
groups), allow_source_address / check_address, check_from / check_to (OpenSIPS uri), the
open-relay start check (issue 17 item 9), and SIPp traffic through examples/auth_script.py with a
trusted source list (127.0.0.1 trusted for UDP, 127.0.0.2 and TCP not)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import types
from pathlib import Path

import fastsip
import pytest

from proxyapp.auth import AUTHORIZED
from proxyapp.config import Config, ConfigError
from proxyapp.permissions import (
    CACHE_SIZE, Entry, Permissions, check_open_relay, exposed_listeners, is_loopback, same_host, same_user,
)
from proxyapp.script import Script

from ..proxy.harness import Harness, sends
from ..proxy.seed import PROXY_IP
from ..proxy.support import SRC, free_port
from .test_script import credentials

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"

# ------------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize("text, network, port, proto", [
    ("192.0.2.10", "192.0.2.10/32", 0, "any"),
    (" 198.51.100.0/24 ", "198.51.100.0/24", 0, "any"),
    ("2001:db8::/32", "2001:db8::/32", 0, "any"),
    ("2001:db8::5", "2001:db8::5/128", 0, "any"),
    ("203.0.113.5:5060", "203.0.113.5/32", 5060, "any"),
    ("203.0.113.5/32:5060:udp", "203.0.113.5/32", 5060, "udp"),
    ("198.51.100.0/28:*:TLS", "198.51.100.0/28", 0, "tls"),
    ("198.51.100.0/28:0:tcp", "198.51.100.0/28", 0, "tcp"),
    ("[2001:db8::5]", "2001:db8::5/128", 0, "any"),
    ("[2001:db8::5]:5060:tcp", "2001:db8::5/128", 5060, "tcp"),
    ("[2001:db8::/32]:5061:wss", "2001:db8::/32", 5061, "wss"),
    ("[2001:db8::]/32:5061", "2001:db8::/32", 5061, "any"),
    ("::ffff:10.0.0.0/120", "10.0.0.0/24", 0, "any"),  # IPv4-mapped: the IPv4 network
    ("0.0.0.0/0", "0.0.0.0/0", 0, "any"),
])
def test_entry_syntax(text, network, port, proto):
    assert Entry.parse(text, "k") == Entry(ipaddress.ip_network(network), port, proto)


@pytest.mark.parametrize("table, message", [
    ({"trusted": ["198.51.100.7/24"]},
     "config: permissions.trusted[0]: '198.51.100.7/24': host bits set in '198.51.100.7/24' (did you mean "
     "'198.51.100.0/24'?)"),
    ({"trusted": ["192.0.2.1", "example.com"]},
     "config: permissions.trusted[1]: 'example.com': 'example.com' is not an IP address or network"),
    ({"trusted": ["192.0.2.1:99999"]}, "config: permissions.trusted[0]: '192.0.2.1:99999': port 99999 out of range"),
    ({"trusted": ["192.0.2.1:sip"]},
     "config: permissions.trusted[0]: '192.0.2.1:sip': port 'sip' is not a number (or '*' for any)"),
    ({"trusted": ["192.0.2.1:5060:quic"]},
     "config: permissions.trusted[0]: '192.0.2.1:5060:quic': transport 'quic' is not one of udp, tcp, tls, ws, "
     "wss, sctp, any"),
    ({"trusted": ["192.0.2.1:5060:udp:x"]},
     "config: permissions.trusted[0]: '192.0.2.1:5060:udp:x': expected 'IP[/PREFIX][:PORT[:PROTO]]' (IPv6 with a "
     "port in brackets)"),
    ({"trusted": ["[2001:db8::5:5060"]}, "config: permissions.trusted[0]: '[2001:db8::5:5060': no closing ']'"),
    ({"trusted": ["[2001:db8::5]5060"]},
     "config: permissions.trusted[0]: '[2001:db8::5]5060': expected ':PORT' after ']'"),
    ({"trusted": ["[2001:db8::/32]/32"]}, "config: permissions.trusted[0]: '[2001:db8::/32]/32': two prefix lengths"),
    ({"trusted": [5060]},
     "config: permissions.trusted[0]: expected a string 'IP[/PREFIX][:PORT[:PROTO]]', got 5060"),
    ({"trusted": {"a": 1}},
     "config: permissions.trusted: expected a list of 'IP[/PREFIX][:PORT[:PROTO]]' strings, got {'a': 1}"),
    ({"trusted": [], "allow": []}, "config: permissions.allow: unknown key (known: groups, trusted)"),
    ({"groups": ["10.0.0.1"]}, "config: permissions.groups: expected a table of name = [entries]"),
    ({"groups": {"trunks": ["10.0.0.1", "10.0.0.300"]}},
     "config: permissions.groups.trunks[1]: '10.0.0.300': '10.0.0.300' is not an IP address or network"),
    ({"groups": {"1": ["10.0.0.1"]}},
     "config: permissions.groups.1: group 1 / 'trusted' is the permissions.trusted list: put these entries there"),
    ({"groups": {"trusted": []}},
     "config: permissions.groups.trusted: group 1 / 'trusted' is the permissions.trusted list: put these entries "
     "there"),
    ({"groups": {"my trunks": []}},
     "config: permissions.groups.my trunks: a group name is 1-64 letters, digits, '_', '-' or '.'"),
])
def test_invalid_tables_name_the_key(table, message):
    with pytest.raises(ConfigError) as err:
        Permissions.from_dict(table)
    assert str(err.value) == message


def test_a_single_string_is_a_one_entry_list_and_an_absent_table_is_empty():
    one = Permissions.from_dict({"trusted": "10.0.0.1"})
    assert one.group(1).entries == (Entry(ipaddress.ip_network("10.0.0.1/32")),)
    empty = Permissions.from_dict(None)
    assert list(empty.groups) == ["trusted"] and len(empty.group("trusted")) == 0 and not empty.restricts
    assert empty.group("trunks") is None


# ------------------------------------------------------------------------------------------------
# Matching

PERMS = Permissions.from_dict({
    "trusted": ["192.0.2.10", "198.51.100.0/24", "2001:db8::/32", "10.1.0.0/16:5060:udp", "10.1.2.0/24:5070"],
    "groups": {"trunks": ["203.0.113.5:5060:udp", "[2001:db8:1::5]:5061:tls", "203.0.113.0/29:*:tcp"],
               "7": ["0.0.0.0/0"]},
})


@pytest.mark.parametrize("group, ip, port, proto, expected", [
    ("trusted", "192.0.2.10", 5060, "udp", True),        # exact IP: any port and transport
    ("trusted", "192.0.2.10", 1, "tcp", True),
    ("trusted", "192.0.2.11", 5060, "udp", False),
    ("trusted", "198.51.100.255", 5060, "tcp", True),    # in the /24
    ("trusted", "198.51.101.0", 5060, "tcp", False),
    ("trusted", "2001:db8:ffff::1", 5060, "tcp", True),  # IPv6 network
    ("trusted", "2001:DB8::1", 5060, "tcp", True),       # the address, not its spelling
    ("trusted", "[2001:db8::1]", 5060, "tcp", True),
    ("trusted", "2001:db9::1", 5060, "tcp", False),
    ("trusted", "::ffff:192.0.2.10", 5060, "udp", True), # a dual-stack socket's IPv4 source
    ("trusted", "10.1.9.9", 5060, "udp", True),          # /16 with port and transport
    ("trusted", "10.1.9.9", 5060, "tcp", False),
    ("trusted", "10.1.9.9", 5061, "udp", False),
    ("trusted", "10.1.2.3", 5070, "tcp", True),          # the /24 inside the /16: its own rule
    ("trusted", "10.1.2.3", 5060, "udp", True),          # ... and the /16's
    ("trusted", "10.1.2.3", 5061, "udp", False),
    ("trusted", "10.1.9.9", None, None, True),           # check_address without port/proto: not compared
    ("trusted", "10.1.9.9", 0, "any", True),
    ("trusted", "10.1.9.9", None, "TCP", False),
    (1, "192.0.2.10", 5060, "udp", True),                # group 1 is "trusted"
    ("1", "192.0.2.10", 5060, "udp", True),
    ("trunks", "203.0.113.5", 5060, "udp", True),
    ("trunks", "203.0.113.5", 5060, "tcp", True),        # the /29 for TCP, any port
    ("trunks", "203.0.113.5", 5062, "udp", False),
    ("trunks", "203.0.113.8", 5060, "tcp", False),       # outside the /29
    ("trunks", "2001:db8:1::5", 5061, "tls", True),
    ("trunks", "2001:db8:1::5", 5061, "tcp", False),
    ("trunks", "192.0.2.10", 5060, "udp", False),        # groups are separate
    (7, "8.8.8.8", 1, "udp", True),                      # a numbered group, every IPv4 address
    (7, "2001:db8::1", 1, "udp", False),
    ("trusted", "example.com", 5060, "udp", False),      # never resolved
    ("trusted", "", 5060, "udp", False),
])
def test_group_matching(group, ip, port, proto, expected):
    g = PERMS.group(group)
    assert g.match(ip, port, proto) is expected
    assert g.match(ip, port, proto) is expected  # the second time from the per-IP cache


def test_the_per_ip_cache_is_bounded():
    g = Permissions.from_dict({"trusted": ["10.0.0.0/8"]}).group("trusted")
    for i in range(CACHE_SIZE + 10):
        assert g.match(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(g._cache) <= CACHE_SIZE


# ------------------------------------------------------------------------------------------------
# Identity comparisons (RFC 3261 §19.1.4)


@pytest.mark.parametrize("uri_user, username, expected", [
    ("alice", "alice", True),
    ("Alice", "alice", False),       # the user part is case-sensitive
    ("%61lice", "alice", True),      # %HH is the character it encodes
    ("%61LICE", "aLICE", True),
    ("al%69ce", "alice", True),
    ("alice%40corp", "alice@corp", True),
    ("alice%zz", "alice%zz", True),  # not an escape: compared as written
    ("%ff", "\xff", False),          # not UTF-8 once decoded: matches nothing
    ("alice", "bob", False),
    (None, "alice", False),
    ("alice", None, False),
    ("", "", False),
])
def test_same_user(uri_user, username, expected):
    assert same_user(uri_user, username) is expected


@pytest.mark.parametrize("host, realm, expected", [
    ("example.com", "example.com", True),
    ("EXAMPLE.com", "example.COM", True),
    ("[2001:db8::1]", "2001:db8::1", True),
    ("example.com", "example.org", False),
    (None, "example.com", False),
    ("example.com", "", False),
])
def test_same_host(host, realm, expected):
    assert same_host(host, realm) is expected


# check_from / check_to through the real core: a script authorizes, then records the verbs.

SEEN: list[tuple[int, bool, bool]] = []


def _identity_route(msg, ctx):
    code = ctx.proxy_authorize()
    if code != AUTHORIZED and "X-No-Challenge" not in msg.headers:
        ctx.proxy_challenge(algorithms="MD5")
        return
    SEEN.append((code, ctx.check_from(), ctx.check_to()))
    ctx.sl_send_reply(200, "Checked")


def _invite(from_uri, to_uri, cseq, extra=""):
    return (
        f"INVITE sip:bob@{PROXY_IP} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.31:5060;branch=z9hG4bKid{cseq}\r\n"
        f"Max-Forwards: 70\r\nFrom: <{from_uri}>;tag=f1\r\nTo: <{to_uri}>\r\nCall-ID: id-{cseq}\r\n"
        f"CSeq: {cseq} INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def _checked(tmp_path, from_uri, to_uri, password="wonderland"):
    """(code, check_from(), check_to()) for a request authenticated as alice (realm PROXY_IP)."""
    h = Harness(Script(types.SimpleNamespace(route=_identity_route), None), aliases=["example.com"],
                auth={"db_url": str(tmp_path / "subs.db"), "realm": PROXY_IP, "algorithms": ["MD5"]})
    h.proxy.auth.store.add("alice", PROXY_IP, "wonderland")
    h.proxy.auth.store.load_sync()
    SEEN.clear()
    r = fastsip.parse(sends(h.rx(_invite(from_uri, to_uri, 1), ("10.0.0.31", 5060)))[0].data)
    assert r.status == 407
    cred = credentials(r.headers.getall("Proxy-Authenticate")[0], "INVITE", f"sip:bob@{PROXY_IP}", password=password)
    extra = f"Proxy-Authorization: {cred}\r\nX-No-Challenge: 1\r\n"
    r = fastsip.parse(sends(h.rx(_invite(from_uri, to_uri, 2, extra), ("10.0.0.31", 5060)))[0].data)
    assert (r.status, r.reason) == (200, "Checked")
    assert len(SEEN) == 1
    return SEEN[0]


ME = f"sip:alice@{PROXY_IP}"


@pytest.mark.parametrize("uri, expected", [
    (ME, True),
    (f"sip:%61lice@{PROXY_IP}", True),            # escaped user: the same user
    (f"sips:alice@{PROXY_IP}", True),
    (f"sip:alice@{PROXY_IP}:5060;transport=udp", True),
    ("sip:alice@EXAMPLE.com", True),              # one of our domains (alias), any case
    (f"sip:Alice@{PROXY_IP}", False),             # another user: case-sensitive
    (f"sip:bob@{PROXY_IP}", False),
    ("sip:alice@carrier.example", False),         # neither the realm nor ours
    (f"sip:{PROXY_IP}", False),                   # no user
    ("tel:+15555550100", False),
])
@pytest.mark.parametrize("header", ["From", "To"])
def test_check_from_and_check_to_truth_table(tmp_path, header, uri, expected):
    other = f"sip:carol@{PROXY_IP}"  # the header not under test names someone else
    from_uri, to_uri = (uri, other) if header == "From" else (other, uri)
    code, from_ok, to_ok = _checked(tmp_path, from_uri, to_uri)
    assert code == AUTHORIZED
    assert (from_ok, to_ok) == ((expected, False) if header == "From" else (False, expected))


def test_check_from_is_false_without_a_successful_authorization(tmp_path):
    code, from_ok, to_ok = _checked(tmp_path, ME, ME, password="guess")
    assert code != AUTHORIZED and (from_ok, to_ok) == (False, False)


# ------------------------------------------------------------------------------------------------
# allow_source_address / check_address through the real core


def _source_route(msg, ctx):
    group = msg.header("X-Group")
    if msg.header("X-Check"):
        ip, port, proto = msg.header("X-Check").split(",")
        ok = ctx.check_address(int(group) if group.isdigit() else group, ip, int(port) if port else None, proto or None)
    else:
        ok = ctx.allow_source_address(group) if group else ctx.allow_source_address()
    ctx.sl_send_reply(200 if ok else 403, "Allowed" if ok else "Not Allowed")


def _options(n, extra=""):
    return (
        f"OPTIONS sip:{PROXY_IP} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKso{n}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:a@example.com>;tag=s{n}\r\nTo: <sip:{PROXY_IP}>\r\nCall-ID: so-{n}\r\nCSeq: 1 OPTIONS\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("extra, src, transport, status", [
    ("", ("192.0.2.10", 5060), "udp", 200),                        # default group: trusted
    ("", ("192.0.2.11", 5060), "udp", 403),
    ("X-Group: trusted\r\n", ("10.1.3.4", 5060), "udp", 200),
    ("X-Group: trusted\r\n", ("10.1.3.4", 5060), "tcp", 403),       # the entry says udp
    ("X-Group: trusted\r\n", ("10.1.3.4", 5062), "udp", 403),       # and port 5060
    ("X-Group: 1\r\n", ("198.51.100.9", 40000), "tcp", 200),
    ("X-Group: trunks\r\n", ("203.0.113.5", 5060), "udp", 200),
    ("X-Group: trunks\r\n", ("192.0.2.10", 5060), "udp", 403),
    ("X-Group: trunks\r\nX-Check: 203.0.113.5,5060,udp\r\n", ("192.0.2.99", 1), "udp", 200),
    ("X-Group: trunks\r\nX-Check: 203.0.113.5,5062,udp\r\n", ("192.0.2.99", 1), "udp", 403),
    ("X-Group: trunks\r\nX-Check: 203.0.113.5,,\r\n", ("192.0.2.99", 1), "udp", 200),
    ("X-Group: 7\r\nX-Check: 8.8.4.4,,\r\n", ("192.0.2.99", 1), "udp", 200),
    ("X-Group: nosuch\r\n", ("192.0.2.10", 5060), "udp", 500),      # a typo is a script error, not a no
])
def test_allow_source_address_and_check_address(extra, src, transport, status):
    h = Harness(Script(types.SimpleNamespace(route=_source_route), None), permissions={
        "trusted": ["192.0.2.10", "198.51.100.0/24", "10.1.0.0/16:5060:udp"],
        "groups": {"trunks": ["203.0.113.5:5060:udp"], "7": ["0.0.0.0/0"]},
    })
    r = fastsip.parse(sends(h.rx(_options(1, extra), src, transport))[0].data)
    assert r.status == status, r.reason


def test_without_a_permissions_table_nobody_is_trusted():
    h = Harness(Script(types.SimpleNamespace(route=_source_route), None))
    assert fastsip.parse(sends(h.rx(_options(1), ("127.0.0.1", 5060)))[0].data).status == 403


def test_the_parsed_table_is_built_once_per_configuration():
    h = Harness(Script(types.SimpleNamespace(route=_source_route), None), permissions={"trusted": ["10.0.0.1"]})
    h.rx(_options(1), ("10.0.0.1", 5060))
    built = h.proxy.script.services.permissions
    h.rx(_options(2), ("10.0.0.2", 5060))
    assert h.proxy.script.services.permissions is built
    assert built.group("trusted")._cache == {"10.0.0.1": ((0, "any"),), "10.0.0.2": ()}


# ------------------------------------------------------------------------------------------------
# The open-relay start check


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.5.6.7", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("192.0.2.1", False), ("10.0.0.1", False), ("2001:db8::1", False),
    ("fe80::1", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


REFUSED_0000 = (
    "config: listen: udp:0.0.0.0:5060 is not on loopback and nothing limits who may relay calls through the "
    "proxy: add an [auth] table (digest authentication, see examples/production.toml), a [permissions] trusted "
    "list of the addresses allowed to relay, or open_relay = true to relay for anyone"
)


@pytest.mark.parametrize("extra, refused", [
    ({}, True),
    ({"permissions": {"trusted": []}}, True),                    # an empty list restricts nothing
    ({"auth": {}}, True),                                        # an empty [auth] table is no auth service
    ({"open_relay": False}, True),
    ({"open_relay": True}, False),
    ({"auth": {"db_url": "subs.db"}}, False),
    ({"permissions": {"trusted": ["203.0.113.5"]}}, False),
    ({"permissions": {"groups": {"trunks": ["203.0.113.5"]}}}, False),
])
def test_open_relay_check(extra, refused):
    cfg = Config.from_dict({"listen": ["udp:0.0.0.0:5060", "tcp:127.0.0.1:5060"], **extra})
    if refused:
        with pytest.raises(ConfigError) as err:
            check_open_relay(cfg)
        assert str(err.value) == REFUSED_0000
    else:
        assert isinstance(check_open_relay(cfg), Permissions)


def test_every_exposed_listener_is_named_and_loopback_ones_pass():
    cfg = Config.from_dict({"listen": ["udp:[::]:5060", "tcp:192.0.2.1:5061", "udp:127.0.0.1:5060"]})
    assert exposed_listeners(cfg) == ["udp:[::]:5060", "tcp:192.0.2.1:5061"]
    with pytest.raises(ConfigError, match=r"^config: listen: udp:\[::\]:5060, tcp:192\.0\.2\.1:5061 are not on "):
        check_open_relay(cfg)
    check_open_relay(Config.embedded())  # the defaults: loopback 5060 (the README's two-command start)
    check_open_relay(Config.from_dict({"listen": ["udp:127.0.0.2:5060", "tcp:[::1]:5060"]}))


def test_an_invalid_permissions_table_is_refused_on_loopback_too():
    with pytest.raises(ConfigError, match=r"^config: permissions\.trusted\[0\]: 'nowhere': "):
        check_open_relay(Config.from_dict({"permissions": {"trusted": ["nowhere"]}}))


def _proxyapp(*args, cwd):
    env = {"PYTHONPATH": str(SRC), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([sys.executable, "-m", "proxyapp", *args], capture_output=True, text=True, timeout=30,
                          env=env, cwd=cwd)


def test_proxyapp_refuses_to_start_as_an_open_relay(tmp_path):
    """The check runs before any socket is opened: the process exits 2 with one line."""
    port = free_port()
    cfg = tmp_path / "open.toml"
    cfg.write_text(f'listen = ["udp:0.0.0.0:{port}"]\n[control]\nsocket = ""\n')
    res = _proxyapp("--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    assert res.stderr == REFUSED_0000.replace(":5060 ", f":{port} ").join(["proxyapp: ", "\n"])
    assert list(tmp_path.iterdir()) == [cfg]  # nothing created: no database, no socket, no spool

    # A loopback configuration with a --listen override off loopback: refused the same way.
    loop = tmp_path / "loop.toml"
    loop.write_text(f'listen = ["udp:127.0.0.1:{port}"]\n[control]\nsocket = ""\n')
    res = _proxyapp("--config", str(loop), "--listen", f"tcp:[::]:{port}", "--check", cwd=tmp_path)
    assert (res.returncode, res.stderr.splitlines()) == (
        2, [f"proxyapp: config: listen: tcp:[::]:{port} is not on loopback and nothing limits who may relay "
            "calls through the proxy: add an [auth] table (digest authentication, see examples/production.toml), "
            "a [permissions] trusted list of the addresses allowed to relay, or open_relay = true to relay for "
            "anyone"])


@pytest.mark.parametrize("extra", ["open_relay = true\n", '[permissions]\ntrusted = ["192.0.2.10"]\n',
                                   '[auth]\ndb_url = "subs.db"\n'])
def test_a_restricted_or_declared_open_configuration_passes_the_check(tmp_path, extra):
    # --check validates without binding: 0.0.0.0 is never opened by this test.
    cfg = tmp_path / "ok.toml"
    cfg.write_text(f'listen = ["udp:0.0.0.0:{free_port()}"]\n{extra}[control]\nsocket = ""\n')
    res = _proxyapp("--config", str(cfg), "--check", cwd=tmp_path)
    assert (res.returncode, res.stdout, res.stderr) == (0, "configuration OK\n", "")


# ------------------------------------------------------------------------------------------------
# End to end: SIPp through examples/auth_script.py with 127.0.0.1 trusted for UDP


def _check(result, proxy, sipp, what: str) -> None:
    out = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    detail = f"{what}: rc={result.returncode}\n{out[-3000:]}\n{sipp.logs()}\n==== proxy\n{proxy.log()[-6000:]}"
    assert result.returncode == 0, detail
    assert "Traceback" not in proxy.log(), detail


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_sipp_trusted_source_relays_and_others_get_403(proxy_factory, sipp):
    proxy = proxy_factory(
        f'script = "{ROOT / "examples" / "auth_script.py"}"\n'
        "[timers]\nT1 = 100\nfr_timeout = 2\nfr_inv_timeout = 3\nwt_timer = 1\n"
        '[auth]\ndb_url = "subs.db"\n'
        '[permissions]\ntrusted = ["127.0.0.1:*:udp"]\n'
    )
    uas_port = free_port()
    far = f"127.0.0.1:{uas_port}"  # another domain as far as the proxy knows (not its address and port)

    # 127.0.0.1 over UDP is trusted: its call to another domain goes through without a challenge.
    uas = sipp.uas("uas_call.xml", uas_port)
    res = sipp.uac("uac_call.xml", proxy.port, far)
    _check(res, proxy, sipp, "trusted call")
    assert sipp.wait(uas) == 0, sipp.logs()
    assert "challenged" not in proxy.log()

    # 127.0.0.2 is not trusted: a stranger's call to another domain is refused.
    res = sipp.uac(str(SCENARIOS / "uac_relay_forbidden.xml"), proxy.port, far, extra=["-i", "127.0.0.2"])
    _check(res, proxy, sipp, "untrusted source")
    assert "INVITE from 127.0.0.2 to sip:+15555550100@" in proxy.log()

    # 127.0.0.1 over TCP is not trusted either (the entry says udp).
    res = sipp.uac(str(SCENARIOS / "uac_relay_forbidden.xml"), proxy.port, far, transport="tcp")
    _check(res, proxy, sipp, "untrusted transport")
    forbidden = [line for line in proxy.log().splitlines() if "relaying forbidden" in line]
    assert len(forbidden) == 2 and "from 127.0.0.1 " in forbidden[1], forbidden
