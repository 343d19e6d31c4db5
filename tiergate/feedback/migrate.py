"""Run the packaged Alembic migrations programmatically: `upgrade(url)` takes any database, empty
or older, to the newest schema; `check_current(engine)` refuses to work on one that is not there.

The script location is the `migrations` folder beside this file, so the migrations travel inside the
wheel and run from any working directory; no alembic.ini is read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from tiergate.feedback.db import database_errors, open_engine, redact
from tiergate.feedback.errors import FeedbackError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger(__name__)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, f"no migration under {MIGRATIONS}"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(target: Engine | URL | str, revision: str = "head") -> str:
    """Migrate a database (an engine, or a URL) up to `revision` in one transaction; returns the
    revision now current. Running it again on a current database changes nothing."""
    engine = target if isinstance(target, Engine) else open_engine(target, create=True)
    config = _config()
    try:
        with database_errors(engine.url):
            before = current_revision(engine)
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
            current = current_revision(engine)
        if current != before:
            log.info("feedback store %s migrated from %s to %s", redact(engine.url), before or "empty", current)
    finally:
        if engine is not target:
            engine.dispose()
    assert current is not None
    return current


def downgrade(engine: Engine, revision: str) -> None:
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def check_current(engine: Engine) -> None:
    """Refuse a database without the newest schema, naming the command that migrates it."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "has no feedback schema" if current is None else f"is at schema revision {current}, this tiergate needs {head}"
        raise FeedbackError(f"the feedback database {redact(engine.url)} {state}; run: tiergate feedback init --db URL")
