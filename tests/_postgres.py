"""A throwaway PostgreSQL server for tests, on 127.0.0.1 and a free port, in a temporary directory.

Import the fixtures into a test module (no conftest needed)::

    from tests._postgres import postgres_server, postgres_url  # noqa: F401

``postgres_url`` gives each test a fresh, empty database (``postgresql+psycopg://postgres@127.0.0.1:PORT/test_N``).
Without the server binaries or psycopg the tests are skipped with the reason; set ``AUTOACCEL_REQUIRE_POSTGRES=1``
(CI) to make that a failure. ``AUTOACCEL_TEST_POSTGRES_URL`` (a superuser URL) uses an existing server instead.

Binaries: ``initdb``/``pg_ctl`` from ``AUTOACCEL_PG_BIN``, ``PATH`` or ``/usr/lib/postgresql/*/bin`` (Debian/Ubuntu:
``apt-get install -y postgresql``). initdb refuses to run as root, so as root the server runs as the ``postgres`` user.
The server is shared by all modules that import the fixture and stopped when the last of them is torn down.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_S = 60
_counter = itertools.count()


@dataclass
class PostgresServer:
    """A running server: ``admin_url`` connects as superuser to the ``postgres`` database."""

    admin_url: str
    data_dir: Path | None = None
    bin_dir: Path | None = None
    user: str | None = None
    users: int = field(default=0)

    def url(self, database: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"test_{os.getpid()}_{next(_counter)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(sql)

    def stop(self) -> None:
        if self.data_dir is None:
            return
        _run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"], self.user)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _run(cmd: list[str], user: str | None, check: bool = True) -> subprocess.CompletedProcess[str]:
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=START_TIMEOUT_S)


def find_bin_dir() -> Path | None:
    """The directory with ``initdb`` and ``pg_ctl``, or None."""
    candidates = [os.environ.get("AUTOACCEL_PG_BIN", "")]
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    return next(
        (Path(c) for c in candidates if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists()), None
    )


def _unavailable(reason: str) -> None:
    if os.environ.get("AUTOACCEL_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL required (AUTOACCEL_REQUIRE_POSTGRES is set) but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> PostgresServer:
    """Starts a server (skips the test when that is impossible here)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'psycopg[binary]')")
    if url := os.environ.get("AUTOACCEL_TEST_POSTGRES_URL"):
        return PostgresServer(admin_url=url)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; install them: apt-get install -y postgresql"
        )
    user = None
    if os.geteuid() == 0:  # initdb refuses root
        user = "postgres"
        try:
            import pwd

            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run the server as")
    root = Path(tempfile.mkdtemp(prefix="autoaccel-pg-"))
    if user is not None:
        os.chown(root, uid, -1)
    data = root / "data"
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
    done = _run([*initdb, "--locale=C", "--no-sync", "--no-instructions"], user, check=False)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
    for _attempt in range(3):
        port = _free_port()
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "30", "-o", options]
        if _run([*start, "start"], user, check=False).returncode == 0:
            return PostgresServer(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", data, bin_dir, user)
    log = (root / "log").read_text() if (root / "log").exists() else ""
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"PostgreSQL did not start:\n{log[-2000:]}")


_shared: PostgresServer | None = None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running server, shared by every module that imports this fixture."""
    global _shared
    if _shared is None:
        _shared = start_server()
    server = _shared
    server.users += 1
    yield server
    server.users -= 1
    if server.users == 0:
        server.stop()
        _shared = None


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh empty database on the shared server, dropped after the test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
