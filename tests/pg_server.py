"""A real, throwaway PostgreSQL server for tests (Debian's postgresql package), on a free loopback port.

Use the session fixture `postgres_url` (registered by tests/conftest.py), or `PostgresServer` directly where a test
must stop and start the server itself (the fault tests). Postgres refuses to run as root, and CI runs as root: then
initdb/pg_ctl run as the `postgres` system user, in a temp dir that user owns.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest


def pg_bindir() -> Path | None:
    """The server's binaries: `pg_config --bindir` (if it has initdb), else the newest /usr/lib/postgresql/*/bin."""
    candidates = []
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10).stdout
            candidates.append(out.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for directory in candidates:
        if directory and all((Path(directory) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """initdb into a temp dir, start on 127.0.0.1:<free port>, trust auth for one superuser `livehost`."""

    def __init__(self, bindir: Path | None = None, fsync: bool = False):
        self.fsync = fsync  # off for tests (speed); the storage bench turns it on, as a real deployment has it
        self.bindir = bindir or pg_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.port = _free_port()
        self.user = "livehost"
        self._as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="livehost-pg-"))
        self.datadir = self.base / "data"
        self.logfile = self.base / "server.log"
        if self._as_root:  # postgres will not run as root: hand the temp dir to the postgres system user
            os.chmod(self.base, 0o700)
            owner = pwd.getpwnam("postgres")
            os.chown(self.base, owner.pw_uid, owner.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/livehost"

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.base)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                               f"{self.log_tail()}")
        return result

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def init(self) -> "PostgresServer":
        self._run("initdb", "-D", str(self.datadir), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        # Loopback TCP only; the socket dir is our temp dir (not /var/run/postgresql, which may not exist in CI).
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.base}'\nfsync = {'on' if self.fsync else 'off'}\n"
                       f"max_connections = 200\n")
        return self

    def start(self) -> "PostgresServer":
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "start")
        self._wait_ready()
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.datadir), "status", check=False).returncode == 0

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres on port {self.port} not ready after {timeout} s\n{self.log_tail()}")

    def create_database(self, name: str) -> str:
        """A fresh database on this server; returns its URL."""
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres",
                  "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"')
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> "PostgresServer":
        self.init().start()
        self.create_database("livehost")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def start_or_skip() -> PostgresServer:
    if pg_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found (initdb/pg_ctl/postgres): apt-get install postgresql")
    return PostgresServer()


@pytest.fixture(scope="session")
def postgres_server():
    """One server for the whole test session; tests get their own database through `postgres_url`'s helpers."""
    with start_or_skip() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """postgresql:// URL of the session's throwaway database `livehost`."""
    return postgres_server.url


@pytest.fixture
def fresh_postgres_url(postgres_server) -> str:
    """A new empty database on the session's server, for a test that needs clean tables."""
    return postgres_server.create_database("t_" + uuid.uuid4().hex[:12])
