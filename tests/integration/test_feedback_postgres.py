"""The feedback store against a real PostgreSQL server (Debian's `postgresql`, started here by
`initdb` + `pg_ctl` on a temporary folder and a free port, not a mock): the same scenarios as the
SQLite unit tests, each on a fresh database. A server that cannot start fails the tests, it does
not skip them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.feedback_helpers import (
    INSULT,
    check_concurrent_submissions,
    check_crash_mid_write,
    check_migrations_from_empty,
    check_refused_writes,
    check_tokens_hashed_and_audit_append_only,
    new_store,
    principal,
    submission,
)
from tests.postgres_helpers import create_database
from tiergate.feedback.errors import StoreUnavailable
from tiergate.feedback.export import RECORDS, export_feedback
from tiergate.feedback.store import FeedbackStore
from tiergate.records import read_jsonl
from tiergate.taxonomy import Taxonomy


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    return create_database(postgres_server)


def test_migrations_up_from_empty(postgres_url: str) -> None:
    check_migrations_from_empty(postgres_url)


def test_concurrent_submissions_neither_lost_nor_duplicated(postgres_url: str, taxonomy: Taxonomy) -> None:
    check_concurrent_submissions(postgres_url, taxonomy, threads=12)


def test_a_writer_killed_mid_transaction_leaves_no_half_item(postgres_url: str, taxonomy: Taxonomy, tmp_path: Path) -> None:
    check_crash_mid_write(postgres_url, taxonomy, tmp_path)


def test_unauthorised_and_malformed_writes_are_refused(postgres_url: str, taxonomy: Taxonomy) -> None:
    check_refused_writes(postgres_url, taxonomy)


def test_tokens_are_stored_hashed_and_the_audit_trail_is_append_only(postgres_url: str, taxonomy: Taxonomy) -> None:
    check_tokens_hashed_and_audit_append_only(postgres_url, taxonomy)


def test_export_from_postgres(postgres_url: str, taxonomy: Taxonomy, tmp_path: Path) -> None:
    store = new_store(postgres_url, taxonomy)
    _, service = principal(store, "svc", "submit")
    _, alice = principal(store, "alice", "review")
    item = store.submit(service, submission()).item
    store.review(alice, item.id, {"harassment": "positive", "threats": "negative"})
    assert export_feedback(store, tmp_path / "out")["exported"] == 1
    (record,) = read_jsonl(tmp_path / "out" / RECORDS)
    assert record.text == INSULT and record.labels == ("harassment",) and "threats" not in record.unknown
    store.close()


def test_an_unreachable_server_is_one_line_without_the_password(postgres_server: str, taxonomy: Taxonomy) -> None:
    port = int(postgres_server.rsplit(":", 1)[1].split("/")[0])
    url = f"postgresql://tiergate:s3cret@127.0.0.1:{port}/no_such_database"
    with pytest.raises(StoreUnavailable) as caught:
        FeedbackStore.open(url, taxonomy)
    message = str(caught.value)
    assert "s3cret" not in message and "tiergate:***@127.0.0.1" in message and "no_such_database" in message
    assert "\n" not in message
