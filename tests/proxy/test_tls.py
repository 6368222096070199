"""SIP over TLS (issue 17 item 6: ``tls:`` listeners, ``[tls]``, proxyapp.tls), real sockets on 127.0.0.1.

RFC 3261 §26.2 (SIP over TLS; a SIPS Request-URI is TLS on every hop, §26.2.2), RFC 3263 §4.1
(sips: and ;transport=tls select TLS, port 5061), RFC 5922 §7.2 (the certificate must name the
domain the request targets, not the address it resolved to), RFC 5630 (SIPS).

The proxy runs in-process (an Edge on its own loop in a thread, tls_support.TlsEdge) between
Python ssl clients and a Python TLS UAS; then end to end as ``python -m proxyapp`` between SIPp
peers wrapped in TLS by stunnel (SIPp of Debian has no TLS), and between baresip phones.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proxyapp.config import Config, ConfigError, Listen
from proxyapp.core.addresses import parse_destination, uri_target
from proxyapp.tls import TlsConfig, TlsStartError

import fastsip

from .support import SRC, free_port
from .tls_support import Pki, Stream, TlsEdge, TlsUas, header, request, status

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def edges():
    started: list[TlsEdge] = []

    def start(tls, **kw) -> TlsEdge:
        e = TlsEdge(tls, **kw)
        started.append(e)
        return e

    yield start
    for e in started:
        e.stop()


@pytest.fixture
def uases():
    started: list[TlsUas] = []

    def start(ctx, code: int = 200) -> TlsUas:
        u = TlsUas(ctx, code)
        started.append(u)
        return u

    yield start
    for u in started:
        u.stop()


@pytest.fixture
def streams():
    opened: list[Stream] = []

    def connect(port: int, ctx, server_hostname: str = "127.0.0.1") -> Stream:
        s = Stream.connect(port, ctx, server_hostname)
        opened.append(s)
        return s

    yield connect
    for s in opened:
        s.close()


# ---------------------------------------------------------------- configuration


def _error(table: dict, listen: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as exc:
        TlsConfig.from_dict(table, [Listen.parse(x) for x in listen])
    return str(exc.value)


def test_listen_tls_defaults_to_port_5061():
    assert str(Listen.parse("tls:127.0.0.1")) == "tls:127.0.0.1:5061"
    assert str(Listen.parse("TLS:[::1]")) == "tls:[::1]:5061"
    assert str(Listen.parse("tls:127.0.0.1:5071")) == "tls:127.0.0.1:5071"
    assert str(Listen.parse("tcp:127.0.0.1")) == "tcp:127.0.0.1:5060"
    assert [str(x) for x in Config.from_dict({"listen": ["udp:127.0.0.1", "tls:127.0.0.1"]}).listen] == [
        "udp:127.0.0.1:5060", "tls:127.0.0.1:5061",
    ]
    with pytest.raises(ConfigError) as exc:
        Config.from_dict({"listen": ["sctp:127.0.0.1:5060"]})
    assert str(exc.value) == (
        "config: listen[0]: 'sctp:127.0.0.1:5060': expected 'udp:IP:PORT', 'tcp:IP:PORT' or 'tls:IP:PORT'"
    )


def test_config_errors_name_the_key():
    # A tls listener without [tls] at all, then without the key.
    assert _error({}, ("tls:127.0.0.1:5071",)) == (
        "config: tls.certificate: required by the listener tls:127.0.0.1:5071 (a PEM file; see [tls])"
    )
    assert _error({"certificate": "/x/cert.pem"}, ("udp:127.0.0.1", "tls:127.0.0.1")) == (
        "config: tls.private_key: required by the listener tls:127.0.0.1:5061 (a PEM file; see [tls])"
    )
    assert _error({"private_key": "/x/key.pem"}) == "config: tls.certificate: required with tls.private_key"
    assert _error({"min_version": "TLSv1.1"}) == "config: tls.min_version: expected 'TLSv1.2' or 'TLSv1.3', got 'TLSv1.1'"
    assert _error({"handshake_timeout": 0}) == "config: tls.handshake_timeout: expected seconds between 0.1 and 300, got 0"
    assert _error({"verify_server": "yes"}) == "config: tls.verify_server: expected true or false, got 'yes'"
    assert _error({"certificate": ""}) == "config: tls.certificate: expected the path of a PEM file, got ''"
    assert _error({"verify_client": True}) == (
        "config: tls.verify_client: needs tls.ca_list (the CAs client certificates are checked against)"
    )
    assert _error({"ca_file": "x"}) == (
        "config: tls.ca_file: unknown key (known: certificate, private_key, ca_list, verify_client, verify_server, "
        "min_version, handshake_timeout)"
    )
    with pytest.raises(ConfigError) as exc:
        TlsConfig.from_dict("x")  # type: ignore[arg-type]
    assert str(exc.value) == "config: tls: expected a table"
    cfg = TlsConfig.from_dict({"certificate": "c", "private_key": "k", "min_version": "TLSv1.3", "handshake_timeout": 2})
    assert (cfg.verify_client, cfg.verify_server, cfg.min_version, cfg.handshake_timeout) == (False, True, "TLSv1.3", 2.0)
    assert TlsConfig.from_dict({}) == TlsConfig()
    # The Edge refuses to start with it (an OSError: "cannot start", not a traceback).
    with pytest.raises(TlsStartError) as start:
        TlsEdge({})
    assert str(start.value).startswith("config: tls.certificate: required by the listener tls:127.0.0.1:")


def test_unusable_files_are_start_errors(pki, tmp_path):
    missing = TlsConfig.from_dict({"certificate": str(tmp_path / "none.pem"), "private_key": str(pki.key("server"))})
    with pytest.raises(TlsStartError) as exc:
        missing.server_context()
    assert str(exc.value) == f"tls.certificate '{tmp_path / 'none.pem'}': no such file"
    mismatched = TlsConfig.from_dict({"certificate": str(pki.cert("server")), "private_key": str(pki.key("client"))})
    with pytest.raises(TlsStartError) as exc:
        mismatched.server_context()
    assert str(exc.value) == (
        f"tls.certificate '{pki.cert('server')}' / tls.private_key '{pki.key('client')}': cannot be used together "
        "(KEY_VALUES_MISMATCH)"
    )
    bad_ca = TlsConfig.from_dict(pki.tls_table(ca_list=str(pki.key("client"))))
    with pytest.raises(TlsStartError) as exc:
        bad_ca.client_context()
    assert str(exc.value).startswith(f"tls.ca_list '{pki.key('client')}': cannot be loaded (")


def test_proxyapp_refuses_to_start(pki, tmp_path):
    """The command line: a tls listener without [tls] is a configuration error (exit status 2,
    found before anything starts, --check too); a key that is not the certificate's is found
    when the files are read: "cannot start" with the keys named, exit status 1. No traceback."""
    port = free_port()
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    conf = tmp_path / "p.toml"
    for tls, status, line in (
        ("", 2, f"proxyapp: config: tls.certificate: required by the listener tls:127.0.0.1:{port} (a PEM file; see [tls])"),
        (f'[tls]\ncertificate = "{pki.cert("server")}"\nprivate_key = "{pki.key("other")}"\n', 1,
         f"cannot start: tls.certificate '{pki.cert('server')}' / tls.private_key '{pki.key('other')}': cannot be used "
         "together (KEY_VALUES_MISMATCH)"),
    ):
        conf.write_text(f'listen = ["tls:127.0.0.1:{port}"]\ncontrol = {{ socket = "" }}\n' + tls)
        r = subprocess.run([sys.executable, "-m", "proxyapp", "--config", str(conf)], capture_output=True, text=True,
                           timeout=30, cwd=tmp_path, env=env)
        assert r.returncode == status, r
        assert f"{line}\n" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    conf.write_text(f'listen = ["tls:127.0.0.1:{port}"]\n')
    r = subprocess.run([sys.executable, "-m", "proxyapp", "--config", str(conf), "--check"], capture_output=True,
                       text=True, timeout=30, cwd=tmp_path, env=env)
    assert r.returncode == 2 and "tls.certificate: required by the listener" in r.stderr, r


# ---------------------------------------------------------------- next-hop rules (RFC 3263 §4.1)


def test_uri_rules_select_tls():
    assert uri_target(fastsip.parse_uri("sips:bob@example.com")) == ("example.com", None, "tls")
    assert uri_target(fastsip.parse_uri("sips:bob@example.com;transport=tcp")) == ("example.com", None, "tls")
    assert uri_target(fastsip.parse_uri("sip:bob@192.0.2.1:5071;transport=TLS")) == ("192.0.2.1", 5071, "tls")
    assert uri_target(fastsip.parse_uri("sip:bob@192.0.2.1;transport=tcp")) == ("192.0.2.1", None, "tcp")
    assert parse_destination("tls:192.0.2.1:5071") == ("192.0.2.1", 5071, "tls")
    assert parse_destination("TLS:example.com") == ("example.com", None, "tls")


# ---------------------------------------------------------------- calls through the proxy


def _invite(stream: Stream, ruri: str, call_id: str, route: str = "") -> bytes | None:
    stream.send(request("INVITE", ruri, via=f"127.0.0.1:{stream.local_port}", call_id=call_id,
                        contact=f"sip:alice@127.0.0.1:{stream.local_port};transport=tls",
                        extra=f"Route: <{route}>\r\n" if route else ""))
    final, _ = stream.read_until(lambda m: status(m) >= 200, timeout=8)
    return final


def test_invite_over_tls_both_sides(pki, edges, uases, streams):
    e = edges(pki.tls_table())
    uas = uases(pki.server_context("server"))
    caller = streams(e.port, pki.client_context())
    final = _invite(caller, f"sip:bob@127.0.0.1:{uas.port};transport=tls", "tls-call-1")
    assert status(final) == 200, final
    ((n, inv),) = uas.wait_requests(1)
    # Our Via says TLS, our Record-Route says transport=tls (RFC 3261 §26.2, §16.6 step 4).
    assert header(inv, "Via")[0] == f"SIP/2.0/TLS 127.0.0.1:{e.port};branch=z9hG4bK" + header(inv, "Via")[0].split(
        ";branch=z9hG4bK")[1]
    assert header(inv, "Record-Route") == [f"<sip:127.0.0.1:{e.port};transport=tls;lr>"]
    # The caller's own Via below ours, stamped with where its TLS connection came from.
    assert header(inv, "Via")[1] == (
        f"SIP/2.0/TLS 127.0.0.1:{caller.local_port};branch=z9hG4bKtls-call-11INVITE"
    )
    # The 200 came back over the caller's connection; the proxy forwarded it with our RR.
    assert header(final, "Record-Route") == [f"<sip:127.0.0.1:{e.port};transport=tls;lr>"]
    # A second request to the same TLS peer reuses the open connection; a sips: R-URI goes over TLS.
    caller.send(request("OPTIONS", f"sip:bob@127.0.0.1:{uas.port};transport=tls", via=f"127.0.0.1:{caller.local_port}",
                        call_id="tls-opt-1"))
    assert status(caller.read_until(lambda m: status(m) >= 200)[0]) == 200
    final = _invite(caller, f"sips:bob@127.0.0.1:{uas.port}", "tls-call-2")
    assert status(final) == 200, final
    reqs = uas.wait_requests(3)
    assert [(n, m.split(b" ", 2)[:2]) for n, m in reqs] == [
        (1, [b"INVITE", f"sip:bob@127.0.0.1:{uas.port};transport=tls".encode()]),
        (1, [b"OPTIONS", f"sip:bob@127.0.0.1:{uas.port};transport=tls".encode()]),
        (1, [b"INVITE", f"sips:bob@127.0.0.1:{uas.port}".encode()]),
    ]
    assert uas.accepted == 1
    # The connection table keys on the transport too: a TCP connection to the same address
    # would be another entry, never reused for TLS.
    assert sorted(e.call(lambda: list(e.edge.conns))) == sorted([
        ("tls", "127.0.0.1", caller.local_port), ("tls", "127.0.0.1", uas.port),
    ])
    s = e.stats()
    # The caller's connection and ours to the UAS; two handshakes, none failed.
    assert (s["connections"], s["connections_in"], s["tls_connections"], s["tls_handshakes"],
            s["tls_handshake_failures"]) == (2, 1, 2, 2, 0), s


def test_server_certificate_must_name_the_target(pki, edges, uases, streams):
    """RFC 5922 §7.2: a certificate for DNS:localhost only is good for sip:...@localhost (the
    name the request targets, resolved to 127.0.0.1) and not for sip:...@127.0.0.1; one for
    another name is good for neither. A refused certificate fails the branch like a refused
    connection: 503."""
    e = edges(pki.tls_table())
    named = uases(pki.server_context("name_only"))
    other = uases(pki.server_context("other"))
    caller = streams(e.port, pki.client_context())
    assert status(_invite(caller, f"sip:bob@127.0.0.1:{named.port};transport=tls", "v-1")) == 503
    assert named.wait_failed(1) == 1
    assert status(_invite(caller, f"sip:bob@localhost:{named.port};transport=tls", "v-2")) == 200
    assert status(_invite(caller, f"sip:bob@localhost:{other.port};transport=tls", "v-3")) == 503
    assert other.wait_failed(1) == 1
    assert [m.split(b" ", 2)[:2] for _, m in named.wait_requests(1)] == [
        [b"INVITE", f"sip:bob@localhost:{named.port};transport=tls".encode()]
    ]
    assert other.wait_requests(0, timeout=0.2) == []
    s = e.stats()
    assert (s["tls_handshakes"], s["tls_handshake_failures"]) == (2, 2), s  # the caller's and localhost's


def test_verify_server_false_accepts_any_certificate(pki, edges, uases, streams):
    e = edges(pki.tls_table(verify_server=False))
    other = uases(pki.server_context("other"))
    caller = streams(e.port, pki.client_context())
    assert status(_invite(caller, f"sip:bob@127.0.0.1:{other.port};transport=tls", "nv-1")) == 200


def test_sips_needs_a_tls_hop(pki, edges, uases):
    """RFC 3261 §26.2.2 / RFC 5630: a SIPS Request-URI never leaves over a non-TLS hop: without a
    tls listener, or with a Route over UDP, the branch fails with 480."""
    port = free_port()
    e = edges({}, listen=[f"udp:127.0.0.1:{port}"])
    uas = uases(pki.server_context("server"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        me = s.getsockname()[1]
        for n, ruri in enumerate((f"sips:bob@127.0.0.1:{uas.port}", f"sip:bob@127.0.0.1:{uas.port};transport=tls")):
            s.sendto(request("INVITE", ruri, via=f"127.0.0.1:{me}", call_id=f"sips-{n}").replace(
                "SIP/2.0/TLS", "SIP/2.0/UDP").encode(), ("127.0.0.1", port))
            codes = []
            for _ in range(3):
                data = s.recv(65536)
                codes.append(status(data))
                if codes[-1] >= 200:
                    break
            assert codes == [100, 480], codes
    assert uas.accepted == 0
    e2 = edges(pki.tls_table())
    udp = free_port()
    caller = Stream.connect(e2.port, pki.client_context())
    try:
        final = _invite(caller, f"sips:bob@127.0.0.1:{uas.port}", "sips-route", route=f"sip:127.0.0.1:{udp};lr")
        assert status(final) == 480, final
    finally:
        caller.close()
    del e


def test_register_over_tls_then_calls_come_back_over_that_connection(pki, edges, streams):
    """The registrar stores source_transport "tls"; a call to the user goes back over the TLS
    connection the phone registered from (RFC 5626 §5.3 flow reuse), not to its Contact."""
    e = edges(pki.tls_table(), aliases=["127.0.0.1"])  # sip:alice@127.0.0.1 is ours, on any port
    phone = streams(e.port, pki.client_context())
    contact = "sip:alice@127.0.0.1:5999;transport=tls"  # nothing listens there: only the flow works
    phone.send(request("REGISTER", "sip:127.0.0.1", via=f"127.0.0.1:{phone.local_port}", call_id="reg-1",
                       contact=contact, to="<sip:alice@127.0.0.1>", extra="Expires: 300\r\n"))
    ok = phone.read(5)
    assert status(ok) == 200, ok
    (b,) = e.call(lambda: e.proxy.location.get("sip:alice@127.0.0.1", time.time()))
    assert (b.contact, b.source_transport, b.source_host, b.source_port, b.socket) == (
        contact, "tls", "127.0.0.1", phone.local_port, f"tls:127.0.0.1:{e.port}",
    )
    caller = streams(e.port, pki.client_context())
    caller.send(request("INVITE", "sip:alice@127.0.0.1", via=f"127.0.0.1:{caller.local_port}", call_id="to-alice",
                        contact=f"sip:bob@127.0.0.1:{caller.local_port};transport=tls"))
    inv = phone.read(5)
    assert inv is not None and inv.startswith(f"INVITE {contact} SIP/2.0\r\n".encode()), inv
    assert header(inv, "Via")[0].startswith(f"SIP/2.0/TLS 127.0.0.1:{e.port};branch=")
    phone.send(bytes(fastsip.make_response(fastsip.parse(inv), 486, "Busy Here", to_tag="al")))
    final, _ = caller.read_until(lambda m: status(m) >= 200)
    assert status(final) == 486, final
    ack = phone.read(5)  # the hop-by-hop ACK of the 486, over the same connection
    assert ack is not None and ack.startswith(f"ACK {contact} SIP/2.0".encode()), ack
    s = e.stats()
    assert (s["connections"], s["tls_connections"], s["tls_handshakes"]) == (2, 2, 2), s


def test_failed_and_slow_handshakes_are_counted_and_dropped(pki, edges):
    from loguru import logger

    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        _failed_and_slow_handshakes(pki, edges)
    finally:
        logger.remove(sink)
    # One WARNING for the first failure, the next two held back (one per 10 s at most).
    assert len(warnings) == 1, warnings
    assert re.fullmatch(r"tls: handshake from 127\.0\.0\.1:\d+ failed: WRONG_VERSION_NUMBER \(1 failed so far\)",
                        warnings[0]), warnings


def _failed_and_slow_handshakes(pki, edges):
    e = edges(pki.tls_table(handshake_timeout=0.5))
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
        s.sendall(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n\r\n")  # plain text on a TLS port
        s.settimeout(5)
        try:
            assert s.recv(100) in (b"",)
        except ConnectionResetError:
            pass
    st = e.wait_stats(lambda s: s["tls_handshake_failures"] == 1)
    assert (st["tls_handshake_failures"], st["connections"]) == (1, 0), st
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:  # connects, says nothing
        s.settimeout(5)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
    took = time.monotonic() - t0
    assert 0.4 <= took < 3, took
    st = e.wait_stats(lambda s: s["tls_handshake_failures"] == 2)
    assert (st["tls_handshake_failures"], st["tls_handshakes"], st["connections"]) == (2, 0, 0), st
    # A client that does not trust the proxy's CA fails too, on its side: counted as well.
    with pytest.raises(ssl.SSLCertVerificationError):
        Stream.connect(e.port, ssl.create_default_context())
    st = e.wait_stats(lambda s: s["tls_handshake_failures"] == 3)
    assert st["tls_handshake_failures"] == 3, st


def test_verify_client_requires_a_certificate(pki, edges, streams):
    e = edges(pki.tls_table(verify_client=True))
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        s = Stream.connect(e.port, pki.client_context())
        try:  # TLS 1.3: the refusal arrives with the first read
            s.send(request("OPTIONS", f"sip:127.0.0.1:{e.port}", via="127.0.0.1:1", call_id="vc-0"))
            s.sock.settimeout(5)
            if s.sock.recv(100) == b"":
                raise ConnectionResetError("closed")
        finally:
            s.close()
    ok = streams(e.port, pki.client_context("client"))
    ok.send(request("OPTIONS", f"sip:127.0.0.1:{e.port}", via=f"127.0.0.1:{ok.local_port}", call_id="vc-1"))
    assert status(ok.read(5)) == 200
    st = e.wait_stats(lambda s: s["tls_handshake_failures"] == 1)
    assert (st["tls_handshake_failures"], st["tls_handshakes"]) == (1, 1), st


def test_tcp_limits_apply_to_tls(pki, edges, streams):
    """[tcp] max_connections_per_ip counts TLS connections (refused before any handshake)."""
    e = edges(pki.tls_table(), tcp={"max_connections_per_ip": 2})
    a = streams(e.port, pki.client_context())
    b = streams(e.port, pki.client_context())
    for s in (a, b):
        s.send(request("OPTIONS", f"sip:127.0.0.1:{e.port}", via=f"127.0.0.1:{s.local_port}", call_id=f"lim-{s.local_port}"))
        assert status(s.read(5)) == 200
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError)):
        streams(e.port, pki.client_context())
    st = e.wait_stats(lambda s: s["refused_per_ip"] == 1)
    assert (st["refused_per_ip"], st["connections"], st["tls_handshakes"], st["tls_handshake_failures"]) == (1, 2, 2, 0), st


def test_a_tls_binding_round_trips_in_sqlite(tmp_path):
    """The location backends store Binding.to_dict() as JSON text: "tls" comes back as written."""
    import asyncio

    from proxyapp.location.backends.db_sqlite import SqliteBackend
    from proxyapp.location.binding import Binding

    b = Binding(aor="sip:alice@127.0.0.1", contact="sip:alice@127.0.0.1:5999;transport=tls", expires=time.time() + 300,
                source_transport="tls", source_host="127.0.0.1", source_port=40001, socket="tls:127.0.0.1:5061")

    async def run() -> list[Binding]:
        w = SqliteBackend(tmp_path / "loc.db")
        await w.start(lambda aor, bs: None)
        w.write(b.aor, [b])
        await w.close()
        r = SqliteBackend(tmp_path / "loc.db")
        loaded = await r.start(lambda aor, bs: None)
        await r.close()
        return loaded

    (got,) = asyncio.run(run())
    assert (got.source_transport, got.source_port, got.socket, got.contact) == (
        "tls", 40001, "tls:127.0.0.1:5061", "sip:alice@127.0.0.1:5999;transport=tls",
    )


# ---------------------------------------------------------------- SIPp over TLS (through stunnel)


@pytest.mark.e2e
def test_sipp_calls_over_tls_through_stunnel(pki, tmp_path, sipp):
    """50 SIPp calls with TLS on both sides of the proxy.

    Debian's SIPp (sip-tester 3.6.1) is built without OpenSSL (``-t l1`` says "To use a TLS
    transport you must compile SIPp with OpenSSL"), so SIPp speaks TCP (``-t t1``) and stunnel
    does the TLS: the caller's stunnel (client mode) wraps its TCP into TLS toward the proxy's
    tls: listener, verifying the proxy's certificate for "localhost"; the callee's stunnel
    (server mode, the test certificate) unwraps the proxy's TLS into TCP toward the SIPp UAS.
    The callee's Contact names its stunnel with ;transport=tls, so the ACK and the BYE go over
    TLS as well (the proxy's Record-Route says transport=tls too)."""
    from .support import SCENARIOS
    from .tls_support import ProxyRun, Stunnel

    calls = 50
    proxy_port, caller_tls, callee_tls, uas_port = free_port(), free_port(), free_port(), free_port()
    scenario = tmp_path / "uas_call_tls.xml"
    text = (SCENARIOS / "uas_call.xml").read_text()
    contact = "Contact: <sip:[local_ip]:[local_port];transport=[transport]>"
    assert text.count(contact) == 3
    scenario.write_text(text.replace(contact, f"Contact: <sip:127.0.0.1:{callee_tls};transport=tls>"))
    tunnels = [
        Stunnel(tmp_path, "caller", accept=caller_tls, connect=proxy_port, client=True, ca=pki.ca, check_host="localhost"),
        Stunnel(tmp_path, "callee", accept=callee_tls, connect=uas_port, client=False, cert=pki.cert("server"),
                key=pki.key("server")),
    ]
    proxy = None
    try:
        proxy = ProxyRun(tmp_path, [f"tls:127.0.0.1:{proxy_port}"], (
            f'[tls]\ncertificate = "{pki.cert("server")}"\nprivate_key = "{pki.key("server")}"\nca_list = "{pki.ca}"\n'
        ))
        uas = sipp.uas(str(scenario), uas_port, transport="tcp", calls=calls)
        res = sipp.uac("uac_call.xml", caller_tls, f"127.0.0.1:{callee_tls};transport=tls", transport="tcp", calls=calls,
                       timeout=60, extra=["-r", "25"])
        uas_rc = sipp.wait(uas, 30)
        log = proxy.log()
        detail = (f"UAC rc={res.returncode} UAS rc={uas_rc}\n{res.stdout.decode(errors='replace')[-3000:]}\n"
                  f"{sipp.logs()}\n" + "\n".join(f"==== stunnel\n{t.log()[-3000:]}" for t in tunnels)
                  + f"\n==== proxy\n{log[-6000:]}")
        assert (res.returncode, uas_rc) == (0, 0), detail
        assert "Traceback" not in log and "internal error" not in log, detail
        # Every INVITE and BYE went out over TLS to the callee's stunnel; the ACKs statelessly.
        assert len(re.findall(rf"forward INVITE sip:service@127\.0\.0\.1:{callee_tls};transport=tls .* to "
                              rf"tls:127\.0\.0\.1:{callee_tls}\n", log)) == calls, detail
        assert len(re.findall(rf"forward BYE .* to tls:127\.0\.0\.1:{callee_tls}\n", log)) == calls, detail
        assert len(re.findall(rf"stateless forward ACK .* to tls:127\.0\.0\.1:{callee_tls}\n", log)) == calls, detail
        assert len(re.findall(r"request INVITE .* from tls:127\.0\.0\.1:", log)) == calls, detail
        # One connection from the caller's stunnel, one (reused for every call) to the callee's;
        # both closed once SIPp exited (stunnel closes its side).
        from .ops_support import wait_until

        s = wait_until(lambda: (st := proxy.stats("tcp"))["connections"] == 0 and st, 10, "the connections closed")
        assert (s["tls_handshakes"], s["tls_handshake_failures"], s["tls_connections"], s["refused_total"]) == (
            2, 0, 0, 0), s
    finally:
        if proxy is not None:
            proxy.stop()
        for t in tunnels:
            t.stop()


# ---------------------------------------------------------------- baresip over TLS


@pytest.mark.e2e
def test_baresip_phones_register_and_call_over_tls(pki, tmp_path):
    """Two baresip 1.0 phones register with proxyapp over TLS (their accounts say
    ;transport=tls, the outbound proxy too) and alice calls bob by his AOR. The proxy asks for
    client certificates (verify_client): each phone presents one issued by the test CA
    (sip_certificate). The INVITE reaches bob over the TLS connection he registered from."""
    from ..phones.baresip import establish, hang_up
    from ..phones.baresip_tls import TlsPhone
    from .ops_support import ctl_json
    from .tls_support import ProxyRun

    port = free_port()
    client_pem = tmp_path / "phone.pem"  # baresip reads the certificate and its key from one file
    client_pem.write_bytes(pki.cert("client").read_bytes() + pki.key("client").read_bytes())
    proxy = ProxyRun(tmp_path, [f"tls:127.0.0.1:{port}"], (
        'aliases = ["127.0.0.1:5060"]\n'
        f'[tls]\ncertificate = "{pki.cert("server")}"\nprivate_key = "{pki.key("server")}"\nca_list = "{pki.ca}"\n'
        "verify_client = true\n"
    ))
    phones: list[TlsPhone] = []

    def report() -> str:
        return "\n".join(p.report() for p in phones) + f"\n==== proxy\n{proxy.log()[-8000:]}"

    try:
        for user in ("alice", "bob"):
            p = TlsPhone(tmp_path, user, cafile=pki.ca, certificate=client_pem, free_port=free_port,
                         proxy=f"127.0.0.1:{port}", context=report)
            phones.append(p)
            p.start()
        alice, bob = phones
        alice.register()
        bob.register()
        shown = ctl_json(proxy.ctl, "ul", "show")
        assert sorted(shown) == ["sip:alice@127.0.0.1", "sip:bob@127.0.0.1"], shown
        for aor, phone in (("sip:alice@127.0.0.1", alice), ("sip:bob@127.0.0.1", bob)):
            (b,) = shown[aor]
            assert b["source"].startswith("tls:127.0.0.1:"), (b, report())
            assert ";transport=tls" in b["contact"], b
        call_id = establish(alice, bob, "sip:bob@127.0.0.1")
        by, other = hang_up(alice, bob)
        assert (by.type, other.type) == ("CALL_CLOSED", "CALL_CLOSED")
        log = proxy.log()
        bob_flow = shown["sip:bob@127.0.0.1"][0]["source"]
        assert re.search(rf"forward INVITE \S+ call-id={call_id} branch \S+ to {re.escape(bob_flow)}\n", log), report()
        assert re.search(rf"forward BYE \S+ call-id={call_id} branch \S+ to {re.escape(bob_flow)}\n", log), report()
        assert "Traceback" not in log and "internal error" not in log, report()
        for p in phones:  # the phones' SIP trace: every message over TLS, none over UDP/TCP
            trace = p.trace()
            assert trace and all(block[0].startswith("TLS ") for block in trace if block), p.report()
        s = proxy.stats("tcp")
        assert (s["tls_connections"], s["tls_handshakes"], s["tls_handshake_failures"]) == (2, 2, 0), s
    finally:
        for p in phones:
            p.stop()
        proxy.stop()
