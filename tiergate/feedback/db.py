"""Database URLs and engines: an SQLite file (the embedded default) or PostgreSQL (psycopg 3).

A URL comes from a flag or `TIERGATE_FEEDBACK_DB` (in the cluster, from a Secret); it is never
printed with its password (`redact`). A bare path means an SQLite file.

SQLite is made safe for several writers: every transaction starts `BEGIN IMMEDIATE` (the writer
lock is taken up front, so two writers queue on the busy timeout instead of one failing on a lock
upgrade), WAL journal, `synchronous=FULL` (a committed item survives a power cut), foreign keys on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from tiergate.errors import InputDataError
from tiergate.feedback.errors import FeedbackError, StoreUnavailable

if TYPE_CHECKING:
    from tiergate.profiles import FeedbackSettings

ENV_VAR = "TIERGATE_FEEDBACK_DB"
DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}


def resolve_url(value: str | None) -> URL:
    """The URL from `--db`, else from the environment; neither is an error saying both ways."""
    raw = value or os.environ.get(ENV_VAR, "")
    if not raw.strip():
        raise InputDataError(f"no feedback database: pass --db URL (sqlite:///PATH or postgresql://...) or set {ENV_VAR}")
    return parse_url(raw.strip())


def parse_url(raw: str) -> URL:
    """An SQLAlchemy URL with its driver fixed (postgresql -> psycopg 3); a bare path is an SQLite file."""
    if "://" not in raw:
        return URL.create("sqlite", database=str(Path(raw).absolute()))
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        scheme = raw.split("://", 1)[0]
        raise InputDataError(
            f"cannot read the feedback database URL (scheme {scheme!r}); use sqlite:///PATH or postgresql://..."
        ) from None
    driver = DRIVERS.get(url.drivername)
    if driver is None:
        raise InputDataError(f"unsupported database {url.drivername!r} in {redact(url)}; use sqlite:///PATH or postgresql://...")
    in_memory = url.query.get("mode") == "memory" or str(url.database or "").startswith(("file::memory:", "file:memdb"))
    if driver == "sqlite" and (url.database in (None, "", ":memory:") or in_memory):
        raise InputDataError("an in-memory SQLite database would lose every item; give a file: sqlite:///PATH")
    return url.set(drivername=driver)


def redact(url: URL | str) -> str:
    """The URL as it may be printed or logged: the password masked."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return "<unreadable URL>"
    query = {key: ("***" if "password" in key.lower() else value) for key, value in url.query.items()}
    return url.set(query=query).render_as_string(hide_password=True)  # psycopg also reads ?password=


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> Path | None:
    return Path(url.database) if is_sqlite(url) and url.database else None


def default_settings() -> FeedbackSettings:
    """The `feedback:` section of the default profile (`local`)."""
    from tiergate.profiles import load_profile

    return load_profile("local").feedback


def open_engine(url: URL | str, settings: FeedbackSettings | None = None, create: bool = False) -> Engine:
    """An engine on an existing store; `create=True` (migrations) may make a new SQLite file and its folder.

    A missing SQLite file is an error naming `init`, never a silently created empty store."""
    url = parse_url(url) if isinstance(url, str) else url
    settings = settings or default_settings()
    path = sqlite_path(url)
    if path is not None:
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise FeedbackError(f"cannot create {path.parent}: {error.strerror or error}") from None
        elif not path.is_file():
            raise FeedbackError(f"no feedback database at {path}; create it with: tiergate feedback init --db sqlite:///{path}")
    return make_engine(url, settings.db_timeout_s)


def make_engine(url: URL, busy_timeout_s: float) -> Engine:
    """An engine for the store; SQLite gets the pragmas and immediate transactions described above."""
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": max(1, round(busy_timeout_s))})
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver begins nothing by itself; `_begin` does
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def database_errors(url: URL) -> Iterator[None]:
    """Database failures as one line naming the database (password masked). A constraint violation
    passes through: only the caller knows what it means (a replayed key, a taken name)."""
    try:
        yield
    except IntegrityError:
        raise
    except DBAPIError as error:
        reason = " ".join(str(error.orig).split())[:300] if error.orig is not None else type(error).__name__
        raise StoreUnavailable(f"feedback database {redact(url)}: {reason}") from None
    except SQLAlchemyError as error:
        raise StoreUnavailable(f"feedback database {redact(url)}: {type(error).__name__}") from None
