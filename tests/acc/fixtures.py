"""Real PostgreSQL and FreeRADIUS instances on loopback, started and stopped by the tests.

Both are the Debian packages (postgresql, freeradius; tests/run.sh installs them).
They never skip: a missing binary fails with a message saying which package to install.
Each server gets a private temp directory and a free 127.0.0.1 port and is stopped by pid.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .e2e import free_udp_port

ACC_DICTIONARY = Path(__file__).resolve().parents[2] / "src" / "proxyapp" / "acc" / "dictionary"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free 127.0.0.1 port for PostgreSQL (TCP) or FreeRADIUS (UDP); free for both, and never
    one already handed to another server or SIPp peer of this run (e2e.free_udp_port)."""
    return free_udp_port()


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): apt-get install postgresql", pytrace=False)
    return Path(found[-1]).parent


class Postgres:
    """A throwaway cluster: trust auth, 127.0.0.1 only, run as the postgres user (it refuses root)."""

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="acc-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        if self._as_root:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "-t", "30", "start"])

    def stop(self, mode: str = "fast") -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"], check=False)

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def destroy(self) -> None:
        self.stop("immediate")
        pid = self.pid()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    pg = Postgres()
    pg.start()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def pg(postgres_server):
    """A fresh database per test (CREATE DATABASE), on the session's server."""
    name = f"acc_{os.getpid()}_{time.monotonic_ns()}"
    if postgres_server.pid() is None:  # a previous test stopped it and failed before restarting
        postgres_server.start()
    postgres_server.query(f'CREATE DATABASE "{name}"')
    url = postgres_server.url.rsplit("/", 1)[0] + "/" + name
    yield postgres_server, url
    if postgres_server.pid() is None:
        postgres_server.start()
    postgres_server.query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class FreeRadius:
    """freeradius -X with an accounting-only virtual server on 127.0.0.1 writing a detail file."""

    SECRET = "acc-test-secret"

    def __init__(self) -> None:
        exe = shutil.which("freeradius") or shutil.which("radiusd")
        if exe is None or not Path("/etc/freeradius/3.0").is_dir():
            pytest.fail("FreeRADIUS not found (freeradius, /etc/freeradius/3.0): apt-get install freeradius", pytrace=False)
        self.exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="acc-radius-"))
        self.raddb = self.dir / "raddb"
        self.acct = self.dir / "radacct"
        self.port = free_port(socket.SOCK_DGRAM)
        self.proc: subprocess.Popen[bytes] | None = None
        self._configure()

    def _configure(self) -> None:
        try:
            shutil.copytree("/etc/freeradius/3.0", self.raddb, symlinks=False)
        except shutil.Error:
            pass  # as a non-root user the certs are unreadable; an accounting server needs none
        # Only the modules an accounting server needs: every other module may want certs etc.
        for p in (self.raddb / "mods-enabled").iterdir():
            p.unlink()
        for p in (self.raddb / "sites-enabled").iterdir():
            p.unlink()
        (self.raddb / "mods-enabled" / "always").write_text((self.raddb / "mods-available" / "always").read_text())
        (self.raddb / "mods-enabled" / "detail").write_text(
            'detail {\n\tfilename = "%s/detail"\n\tescape_filenames = no\n\tpermissions = 0600\n\theader = "%%t"\n}\n' % self.acct
        )
        (self.raddb / "sites-enabled" / "acc").write_text(
            "server acc {\n"
            "\tlisten {\n\t\ttype = acct\n\t\tipaddr = 127.0.0.1\n\t\tport = %d\n\t}\n"
            "\taccounting {\n\t\tdetail\n\t\tok\n\t}\n"
            "}\n" % self.port
        )
        (self.raddb / "clients.conf").write_text("client localhost {\n\tipaddr = 127.0.0.1\n\tsecret = %s\n}\n" % self.SECRET)
        # The SIP attributes of the shipped dictionary, so the detail file names them.  The
        # stock dictionary defines a Columbia-University VSA also called Sip-Method: use a
        # private dictionary directory (freeradius -D) without that one include.
        self.dictdir = self.dir / "dict"
        self.dictdir.mkdir()
        for p in Path("/usr/share/freeradius").iterdir():
            if p.name != "dictionary":
                (self.dictdir / p.name).symlink_to(p)
        main = Path("/usr/share/freeradius/dictionary").read_text().replace("$INCLUDE dictionary.columbia_university", "#")
        sip = [l for l in ACC_DICTIONARY.read_text().splitlines() if l.split()[:2] and l.split()[0] in ("ATTRIBUTE", "VALUE") and l.split()[1].startswith("Sip-")]
        (self.dictdir / "dictionary").write_text(main + "\n" + "\n".join(sip) + "\n")
        conf = (self.raddb / "radiusd.conf").read_text()
        conf = conf.replace("raddbdir = /etc/freeradius/3.0", f"raddbdir = {self.raddb}")
        conf = conf.replace("radacctdir = ${logdir}/radacct", f"radacctdir = {self.acct}")
        conf = conf.replace("logdir = /var/log/freeradius", f"logdir = {self.dir}")
        conf = conf.replace("run_dir = ${localstatedir}/run/${name}", f"run_dir = {self.dir}")
        # Run as the invoking user (root in CI): no privilege switch into a dir it cannot read.
        lines = [l for l in conf.splitlines() if l.strip() not in ("user = freerad", "group = freerad")]
        (self.raddb / "radiusd.conf").write_text("\n".join(lines) + "\n")
        self.acct.mkdir()

    def start(self) -> None:
        self.log = open(self.dir / "radiusd.out", "wb")
        self.proc = subprocess.Popen([self.exe, "-X", "-d", str(self.raddb), "-D", str(self.dictdir)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("freeradius exited:\n" + (self.dir / "radiusd.out").read_text()[-4000:], pytrace=False)
            if b"Ready to process requests" in (self.dir / "radiusd.out").read_bytes():
                return
            time.sleep(0.1)
        pytest.fail("freeradius did not become ready:\n" + (self.dir / "radiusd.out").read_text()[-4000:], pytrace=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.log.close()

    def detail_records(self) -> list[dict[str, str]]:
        """Parsed detail file: one dict per accounting request (values unquoted)."""
        path = self.acct / "detail"
        if not path.exists():
            return []
        out: list[dict[str, str]] = []
        cur: dict[str, str] | None = None
        for line in path.read_text().splitlines():
            if not line.strip():
                if cur is not None:
                    out.append(cur)
                cur = None
                continue
            if not line.startswith(("\t", " ")):
                cur = {"_header": line}
                continue
            k, _, v = line.strip().partition(" = ")
            if cur is not None:
                cur[k] = v.strip('"')
        if cur is not None:
            out.append(cur)
        return out

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def freeradius_server():
    fr = FreeRadius()
    fr.start()
    try:
        yield fr
    finally:
        fr.destroy()
