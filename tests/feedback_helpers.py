"""Feedback-store scenarios run the same way against SQLite (unit tests) and a real PostgreSQL
server (integration tests): migrations from empty, concurrent idempotent submissions, a writer
killed mid-transaction, refused writes, the append-only audit trail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from tiergate.errors import InputDataError
from tiergate.feedback.db import open_engine
from tiergate.feedback.errors import Conflict, Forbidden, Unauthorized
from tiergate.feedback.migrate import current_revision, downgrade, head_revision, upgrade
from tiergate.feedback.models import AuditEvent, Base, Item, Token
from tiergate.feedback.schema import Submission
from tiergate.feedback.store import FeedbackStore, Principal
from tiergate.feedback.tokens import token_digest
from tiergate.profiles import FeedbackSettings, load_profile
from tiergate.taxonomy import Taxonomy

REPO_ROOT = Path(__file__).resolve().parent.parent
TABLES = {"tokens", "items", "reviews", "review_labels", "audit_events", "alembic_version"}
INSULT = "you are a useless idiot"


def feedback_settings(**overrides: Any) -> FeedbackSettings:
    return load_profile("local", {"feedback": overrides} if overrides else None).feedback


def new_store(url: str, taxonomy: Taxonomy, settings: FeedbackSettings | None = None) -> FeedbackStore:
    """A migrated store on `url` (an empty database)."""
    settings = settings or feedback_settings()
    upgrade(open_engine(url, settings, create=True))
    return FeedbackStore(open_engine(url, settings), taxonomy, settings)


def principal(store: FeedbackStore, name: str, *scopes: str) -> tuple[str, Principal]:
    raw, _ = store.create_token(name, list(scopes), "test")
    return raw, store.authenticate(raw, scopes[0])


def submission(text: str = INSULT, key: str | None = None, **fields: Any) -> Submission:
    return Submission(text=text, context=fields.pop("context", "general/message"), idempotency_key=key, **fields)


def count(store: FeedbackStore, model: type[Base]) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


# --- scenarios --------------------------------------------------------------------------------------


def check_migrations_from_empty(url: str) -> None:
    """Empty -> head creates exactly the ORM's schema; again is a no-op; down to base and up again works."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = open_engine(url, feedback_settings(), create=True)
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) == set()
    assert upgrade(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) == TABLES
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == [], differences  # the migrations build what the ORM maps
    assert upgrade(url) == head_revision()  # by URL, and idempotent
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert upgrade(engine) == head_revision()
    engine.dispose()


def check_concurrent_submissions(url: str, taxonomy: Taxonomy, threads: int = 8, per_thread: int = 5) -> None:
    """Threads released together: one key -> one item for all; distinct keys -> every item once."""
    store = new_store(url, taxonomy)
    _, service = principal(store, "svc", "submit")
    barrier = threading.Barrier(threads)
    results: list[Any] = []
    errors: list[BaseException] = []

    def same_key() -> None:
        try:
            barrier.wait()
            results.append(store.submit(service, submission(key="report-42")))
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=same_key) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert len(results) == threads
    assert len({result.item.id for result in results}) == 1
    assert sum(result.created for result in results) == 1
    assert count(store, Item) == 1

    barrier = threading.Barrier(threads)
    ids: list[int] = []

    def distinct_keys(worker: int) -> None:
        try:
            barrier.wait()
            for index in range(per_thread):
                result = store.submit(service, submission(f"{INSULT} {worker}-{index}", key=f"k-{worker}-{index}"))
                assert result.created
                ids.append(result.item.id)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=distinct_keys, args=(number,)) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert len(ids) == len(set(ids)) == threads * per_thread
    assert count(store, Item) == 1 + threads * per_thread
    submits = [event for event in store.audit_trail() if event.action == "item.submit"]
    assert len(submits) == 1 + threads * per_thread  # one audit event per stored item, none for a replay
    store.close()


WRITER = """
import os, sys, time
from sqlalchemy import event
from tiergate.feedback.schema import Submission
from tiergate.feedback.store import FeedbackStore

url, token, marker, mode = sys.argv[1:5]
store = FeedbackStore.open(url)
me = store.authenticate(token, "submit")
if mode == "hang":
    @event.listens_for(store.engine, "before_cursor_execute")
    def _hang(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_EVENTS"):
            open(marker, "w").write("item inserted, audit pending, not committed")
            time.sleep(600)
result = store.submit(me, Submission(text="send me your password or else", context="general/message", idempotency_key="crash-1"))
print(result.item.id, result.created)
"""


def check_crash_mid_write(url: str, taxonomy: Taxonomy, tmp_path: Path) -> None:
    """SIGKILL a writer between its item INSERT and its audit INSERT: the item is not there at all;
    the same submission again is stored whole (item and audit event)."""
    store = new_store(url, taxonomy)
    raw, _ = principal(store, "writer", "submit")
    marker = tmp_path / "in-transaction"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, raw, str(marker), "hang"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert writer.poll() is None, writer.stderr.read().decode() if writer.stderr else "writer exited"
            assert time.monotonic() < deadline, "the writer never reached the point between its statements"
            time.sleep(0.05)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == -signal.SIGKILL
    assert count(store, Item) == 0
    assert [event.action for event in store.audit_trail()] == ["token.create"]

    done = subprocess.run([sys.executable, "-c", WRITER, url, raw, str(marker), "plain"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "True"
    assert count(store, Item) == 1
    assert [event.action for event in store.audit_trail()] == ["token.create", "item.submit"]
    store.close()


def check_refused_writes(url: str, taxonomy: Taxonomy) -> None:
    """No token, an unknown or revoked token, the wrong scope, malformed items: refused, nothing stored."""
    store = new_store(url, taxonomy, feedback_settings(max_text_chars=50))
    raw_submit, service = principal(store, "svc", "submit")
    raw_review, reviewer = principal(store, "alice", "review")
    for missing in (None, "", "   "):
        with pytest.raises(Unauthorized, match="no token"):
            store.authenticate(missing, "submit")
    with pytest.raises(Unauthorized, match="unknown or revoked"):
        store.authenticate(raw_submit + "x", "submit")
    with pytest.raises(Forbidden, match="needs 'submit'"):
        store.authenticate(raw_review, "submit")
    with pytest.raises(Forbidden, match="may not submit"):
        store.submit(reviewer, submission())
    with pytest.raises(Forbidden, match="may not review"):
        store.review(service, 1, {"harassment": "positive"})
    store.revoke_token("svc", "test")
    with pytest.raises(Unauthorized, match="unknown or revoked"):
        store.authenticate(raw_submit, "submit")

    _, service = principal(store, "svc2", "submit")
    malformed = [
        (
            submission(labels={"harasment": "positive"}),
            r"'harasment' is not a category of the taxonomy; did you mean 'harassment'",
        ),
        (submission("x" * 51), "text is 51 characters; the limit is 50"),
        (submission(""), "text is empty"),
        (submission(context="kids/message"), "unknown audience 'kids'"),
        (submission(context="general"), "must look like AUDIENCE/SURFACE"),
        (submission(predicted={"scores": {"harassment": 1.5}}), "a score lies in 0..1"),
        (submission(predicted={"scores": {"nonsense": 0.5}}), "'nonsense' is not a category"),
        (submission(key="has space"), "idempotency_key"),
        (submission(reason="bad\x07bell"), "control character"),
    ]
    for item, message in malformed:
        with pytest.raises(InputDataError, match=message):
            store.submit(service, item)
    assert count(store, Item) == 0

    first = store.submit(service, submission(key="same"))
    with pytest.raises(Conflict, match="used for different content"):
        store.submit(service, submission("another text entirely", key="same"))
    assert store.submit(service, submission(key="same")).item.id == first.item.id
    with pytest.raises(InputDataError, match="not a category"):
        store.review(reviewer, first.item.id, {"harrassment": "positive"})
    with pytest.raises(InputDataError, match="use positive or negative"):
        store.review(reviewer, first.item.id, {"harassment": "maybe"})
    store.review(reviewer, first.item.id, {"harassment": "positive"})
    with pytest.raises(Conflict, match="already reviewed"):
        store.review(reviewer, first.item.id, {"harassment": "negative"})
    assert count(store, Item) == 1
    store.close()


def check_tokens_hashed_and_audit_append_only(url: str, taxonomy: Taxonomy) -> None:
    store = new_store(url, taxonomy)
    raw, service = principal(store, "svc", "submit")
    store.submit(service, submission())
    with store.engine.connect() as connection:
        row = connection.execute(select(Token.token_sha256, Token.scopes)).one()
        assert row.token_sha256 == token_digest(raw) and raw not in row
    for statement in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(text(statement))
    assert [event.actor for event in store.audit_trail()] == ["test", "token:svc"]
    assert count(store, AuditEvent) == 2
    store.close()
