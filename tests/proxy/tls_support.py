"""Helpers for the TLS tests: a test CA and certificates made at run time, an Edge with a tls:
listener in a thread, a TLS UAS and blocking TLS SIP clients. Everything on 127.0.0.1.

Certificates (``cryptography``): one CA; ``server`` (SAN DNS:localhost, IP:127.0.0.1),
``name_only`` (SAN DNS:localhost only: valid for the name, not for the address), ``other``
(SAN DNS:other.example: valid for neither) and ``client`` (a client certificate); each as
NAME.pem + NAME.key.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import fastsip
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxyapp.config import Config
from proxyapp.proxy import Proxy
from proxyapp.transport import Edge, new_event_loop

from .support import ProxyProcess, free_port


# ---------------------------------------------------------------- certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ))


class Pki:
    """A test CA in ``dir`` and the certificates it issued (see the module docstring)."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        dir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        self._validity = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2))
        self._ca_key = _key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxyapp test CA")])
        self._ca_name = name
        ca = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(self._validity[0])
            .not_valid_after(self._validity[1])
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key()), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca = dir / "ca.pem"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self._ca_cert = ca
        self.issue("server", ["localhost"], ["127.0.0.1"])
        self.issue("name_only", ["localhost"], [])
        self.issue("other", ["other.example"], [])
        self.issue("client", ["client.test"], [], client=True)

    def issue(self, name: str, dns: list[str], ips: list[str], client: bool = False) -> tuple[Path, Path]:
        key = _key()
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns or ips)[0])]))
            .issuer_name(self._ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(self._validity[0])
            .not_valid_after(self._validity[1])
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage, ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        _write(self.dir / name, key, cert)
        return self.cert(name), self.key(name)

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def tls_table(self, name: str = "server", **extra: Any) -> dict[str, Any]:
        """A [tls] table with ``name``'s certificate and the test CA."""
        return {"certificate": str(self.cert(name)), "private_key": str(self.key(name)), "ca_list": str(self.ca)} | extra

    def client_context(self, cert: str | None = None) -> ssl.SSLContext:
        """A client context trusting the test CA (hostname checked), optionally with a certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            ctx.load_cert_chain(str(self.cert(cert)), str(self.key(cert)))
        return ctx

    def server_context(self, name: str = "server") -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert(name)), str(self.key(name)))
        return ctx


# ---------------------------------------------------------------- SIP over a stream


class Stream:
    """A blocking SIP-over-TLS (or TCP) connection: send, and read whole messages (Content-Length)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    @classmethod
    def connect(cls, port: int, ctx: ssl.SSLContext | None, server_hostname: str = "127.0.0.1",
                timeout: float = 5.0) -> "Stream":
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if ctx is None:
            return cls(raw)
        try:
            return cls(ctx.wrap_socket(raw, server_hostname=server_hostname))
        except BaseException:
            raw.close()
            raise

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def read(self, timeout: float = 5.0) -> bytes | None:
        """The next message, or None when nothing complete came within ``timeout`` (or EOF)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self._take()
            if msg is not None:
                return msg
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLError, OSError):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def read_until(self, pred: Callable[[bytes], bool], timeout: float = 5.0, limit: int = 20) -> tuple[bytes | None, list[bytes]]:
        """Messages until one matches ``pred`` (at most ``limit``): (the match or None, all read)."""
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        for _ in range(limit):
            msg = self.read(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return None, seen
            seen.append(msg)
            if pred(msg):
                return msg, seen
        return None, seen

    def _take(self) -> bytes | None:
        self.buf = self.buf.lstrip(b"\r\n")
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buf[:end]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() in (b"content-length", b"l"):
                length = int(value.strip())
        total = end + 4 + length
        if len(self.buf) < total:
            return None
        msg, self.buf = self.buf[:total], self.buf[total:]
        return msg

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def header(msg: bytes, name: str) -> list[str]:
    """Every value line of header ``name`` in ``msg`` (as written, first to last)."""
    out = []
    for line in msg.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        n, _, v = line.partition(b":")
        if n.strip().lower() == name.lower().encode():
            out.append(v.strip().decode())
    return out


def status(msg: bytes | None) -> int:
    if msg is None or not msg.startswith(b"SIP/2.0 "):
        return 0
    return int(msg[8:11])


def request(method: str, ruri: str, *, via: str, call_id: str, cseq: int = 1, contact: str | None = None,
            to: str | None = None, extra: str = "", tag: str = "c1") -> str:
    """A request over TLS from a client at ``via`` (host:port); Content-Length 0."""
    to = to or f"<{ruri.split(';')[0]}>"
    return (
        f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/TLS {via};branch=z9hG4bK{call_id}{cseq}{method}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag={tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n" + (f"Contact: <{contact}>\r\n" if contact else "") + extra
        + "Content-Length: 0\r\n\r\n"
    )


def answer(req: bytes, code: int, reason: str, to_tag: str = "uas1", contact: str | None = None) -> bytes:
    """A UAS's response to ``req`` (all its Vias, Record-Route copied, To tag added)."""
    msg = fastsip.parse(req)
    r = fastsip.make_response(msg, code, reason, to_tag=to_tag if code > 100 else None)
    data = bytes(r)
    extra = "".join(f"Record-Route: {v}\r\n" for v in header(req, "Record-Route"))
    if contact:
        extra += f"Contact: <{contact}>\r\n"
    if extra:
        data = data.replace(b"Content-Length", extra.encode() + b"Content-Length", 1)
    return data


# ---------------------------------------------------------------- a TLS UAS


class TlsUas:
    """A SIP UAS over TLS on 127.0.0.1 (a thread per connection): answers every request with
    ``code`` (INVITE: 200 with a Contact), keeps what it received and how many connections it
    accepted."""

    def __init__(self, ctx: ssl.SSLContext, code: int = 200) -> None:
        self.ctx = ctx
        self.code = code
        self.port = free_port()
        self.accepted = 0
        self.failed_handshakes = 0
        self.received: list[tuple[int, bytes]] = []  # (connection number, message)
        self.cond = threading.Condition()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._streams: list[Stream] = []
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            raw.settimeout(5)
            try:
                sock = self.ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                with self.cond:
                    self.failed_handshakes += 1
                    self.cond.notify_all()
                raw.close()
                continue
            with self.cond:
                self.accepted += 1
                n = self.accepted
            stream = Stream(sock)
            self._streams.append(stream)
            t = threading.Thread(target=self._serve, args=(stream, n), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, stream: Stream, n: int) -> None:
        while not self._stop.is_set():
            msg = stream.read(0.2)
            if msg is None:
                if stream.sock.fileno() < 0:
                    return
                try:
                    if stream.sock.recv(1, socket.MSG_PEEK) == b"":
                        return
                except (socket.timeout, ssl.SSLError, BlockingIOError):
                    pass
                except OSError:
                    return
                continue
            with self.cond:
                self.received.append((n, msg))
                self.cond.notify_all()
            if msg.startswith(b"SIP/2.0") or msg.startswith(b"ACK "):
                continue
            method = msg.split(b" ", 1)[0].decode()
            code = self.code if method == "INVITE" else 200
            contact = f"sip:bob@127.0.0.1:{self.port};transport=tls" if method == "INVITE" and code == 200 else None
            try:
                stream.send(answer(msg, code, "OK" if code == 200 else "Busy Here", contact=contact))
            except OSError:
                return

    def wait_requests(self, count: int, timeout: float = 5.0) -> list[tuple[int, bytes]]:
        """The requests received once there are ``count`` (bounded wait)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                reqs = [(n, m) for n, m in self.received if not m.startswith(b"SIP/2.0")]
                left = deadline - time.monotonic()
                if len(reqs) >= count or left <= 0:
                    return reqs
                self.cond.wait(left)

    def wait_failed(self, count: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.failed_handshakes < count and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            return self.failed_handshakes

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        for s in self._streams:
            s.close()
        for t in self._threads:
            t.join(2)


# ---------------------------------------------------------------- the proxy, in a thread


class TlsEdge:
    """The proxy core and its Edge on their own event loop in a thread, with a tls: listener
    (plus ``extra`` listeners) and the given [tls] table; the built-in script."""

    def __init__(self, tls: dict[str, Any], listen: list[str] | None = None, **cfg: Any) -> None:
        self.port = free_port()
        self.listen = listen if listen is not None else [f"tls:127.0.0.1:{self.port}"]
        self.cfg = Config.from_dict({"listen": self.listen, "tls": tls, **cfg})
        self.proxy = Proxy(self.cfg, branch_salt="tls")
        self.edge = Edge(self.proxy, self.cfg)
        self.loop = new_event_loop()
        started = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.edge.start())
            except BaseException as exc:  # reported by the constructor
                self.error = exc
                started.set()
                return
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10), "the edge did not start"
        if self.error is not None:
            raise self.error

    def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the edge's loop (its state is the loop's)."""
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def stats(self) -> dict[str, int]:
        return dict(self.call(self.edge.tcp_stats))

    def wait_stats(self, pred: Callable[[dict[str, int]], bool], timeout: float = 5.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if pred(s) or time.monotonic() > deadline:
                return s
            time.sleep(0.05)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.edge.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# ---------------------------------------------------------------- processes: proxyapp, stunnel


class ProxyRun(ProxyProcess):
    """``python -m proxyapp --config FILE`` with the given listen list and TOML (a tls: listener
    needs a [tls] table in ``extra_toml``); its control socket is DIR/proxyapp-ctl.sock."""

    def __init__(self, tmp: Path, listen: list[str], extra_toml: str, name: str = "proxy") -> None:
        self.ctl = tmp / "proxyapp-ctl.sock"
        super().__init__(tmp, 0, extra_toml, "DEBUG", name=name, listen_list=listen)

    def stats(self, group: str = "tcp") -> dict[str, Any]:
        from .ops_support import ctl_json

        return dict(ctl_json(self.ctl, "stats", group)[group])


def stunnel_path() -> str:
    """stunnel (Debian's stunnel4); fails the test (never skips it) with the package to install."""
    for name in ("stunnel4", "stunnel"):
        path = shutil.which(name)
        if path is not None:
            return path
    raise AssertionError("stunnel is required for the SIPp-over-TLS test: apt-get install stunnel4 "
                         "(tests/run.sh installs it)")


class Stunnel:
    """One stunnel process in the foreground: ``client`` wraps plain TCP accepted on ``accept``
    into TLS toward ``connect`` (verifying the peer against ``ca`` and ``check_host``); a server
    unwraps TLS accepted on ``accept`` (``cert``/``key``) into plain TCP toward ``connect``."""

    def __init__(self, tmp: Path, name: str, *, accept: int, connect: int, client: bool, ca: Path | None = None,
                 check_host: str | None = None, cert: Path | None = None, key: Path | None = None) -> None:
        self.accept = accept
        self.log_path = tmp / f"stunnel-{name}.log"
        conf = tmp / f"stunnel-{name}.conf"
        lines = ["foreground = yes", "pid =", f"output = {self.log_path}", "debug = 5", "syslog = no",
                 f"[{name}]", f"accept = 127.0.0.1:{accept}", f"connect = 127.0.0.1:{connect}"]
        if client:
            lines += ["client = yes", "verifyChain = yes", f"CAfile = {ca}", f"checkHost = {check_host}"]
        else:
            lines += [f"cert = {cert}", f"key = {key}"]
        conf.write_text("\n".join(lines) + "\n")
        self._out = (tmp / f"stunnel-{name}.out").open("wb")
        self.proc = subprocess.Popen([stunnel_path(), str(conf)], stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=str(tmp))
        deadline = time.monotonic() + 10
        while not self._listening():  # (not probed by connecting: that would open a TLS hop)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"stunnel {name} did not start:\n{self.log()}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        """stunnel holds the accept port (we cannot bind it)."""
        if "Configuration successful" not in self.log():
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", self.accept))
            except OSError:
                return True
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        from .support import _stop

        _stop(self.proc, 2)
        self._out.close()
