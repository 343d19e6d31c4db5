"""A real PostgreSQL server for tests: `initdb` + `pg_ctl start` on a temporary folder and a free
loopback port, stopped and removed afterwards. Debian's `postgresql` package provides the binaries
(`.ci/run` installs it). PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` system user the package creates (`runuser`). Nothing is mocked and nothing is downloaded.

A missing binary or a server that does not start is a failure with one clear line, never a skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SUPERUSER = "tiergate"
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server would not start (the message says which)."""


def postgres_bin(name: str) -> str:
    """`initdb`/`pg_ctl`: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]), reverse=True)
    if candidates:
        return str(candidates[0])
    raise PostgresUnavailable(
        f"PostgreSQL's {name} not found (PATH or /usr/lib/postgresql/*/bin): apt-get install -y postgresql (.ci/run does)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> tuple[list[str], pwd.struct_passwd | None]:
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server as") from None
    runuser = shutil.which("runuser") or shutil.which("setpriv")
    if runuser is None:
        raise PostgresUnavailable("running as root without runuser/setpriv to drop to the 'postgres' user")
    if runuser.endswith("setpriv"):
        return [runuser, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"], user
    return [runuser, "-u", "postgres", "--"], user


@contextmanager
def running_postgres() -> Iterator[str]:
    """A started server; yields the admin URL (database `postgres`, trust auth on 127.0.0.1)."""
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    prefix, user = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="tiergate-pg-"))
    data, sockets, logfile = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if user is not None:
        for path in (root, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    root.chmod(0o700)
    port = free_port()
    started = False
    try:
        run = [*prefix, initdb, "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        result = subprocess.run(run, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {' '.join(result.stderr.split())[:400]}")
        options = f"-h 127.0.0.1 -p {port} -k {sockets} -F"
        start = [*prefix, pg_ctl, "-D", str(data), "-l", str(logfile), "-w", "-t", str(START_TIMEOUT_S), "-o", options, "start"]
        result = subprocess.run(start, capture_output=True, text=True, timeout=START_TIMEOUT_S + 10)
        if result.returncode != 0:
            log = logfile.read_text(errors="replace")[-600:] if logfile.exists() else result.stderr
            raise PostgresUnavailable(f"PostgreSQL did not start on port {port}: {' '.join(log.split())}")
        started = True
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def create_database(admin_url: str) -> str:
    """A fresh, empty database on the server; returns its URL."""
    import psycopg

    name = f"feedback_{uuid.uuid4().hex[:12]}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server for one test module (its admin URL); fails, never skips, without one."""
    try:
        with running_postgres() as admin_url:
            yield admin_url
    except PostgresUnavailable as error:
        pytest.fail(f"a real PostgreSQL server is needed for these tests: {error}", pytrace=False)
