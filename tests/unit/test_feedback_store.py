"""The feedback store on an SQLite file: migrations, concurrency, crash safety, refused writes,
agreement, uncertainty sampling, the export back into training, and the `tiergate feedback` CLI.
The same scenarios run against a real PostgreSQL server in tests/integration/test_feedback_postgres.py."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.feedback_helpers import (
    INSULT,
    check_concurrent_submissions,
    check_crash_mid_write,
    check_migrations_from_empty,
    check_refused_writes,
    check_tokens_hashed_and_audit_append_only,
    feedback_settings,
    new_store,
    principal,
    submission,
)
from tiergate.components.merge.screen import screened_negative
from tiergate.datasets import load_manifest
from tiergate.errors import InputDataError, OutputError
from tiergate.feedback.agreement import category_kappa, item_agreement
from tiergate.feedback.db import parse_url, redact
from tiergate.feedback.errors import FeedbackError
from tiergate.feedback.export import EXPORT_REPORT, PROVENANCE, RECORDS, export_feedback
from tiergate.feedback.sampling import UncertaintySampler, near_threshold
from tiergate.feedback.store import FeedbackStore
from tiergate.records import Kind, LabelState, read_jsonl, source_name
from tiergate.taxonomy import Taxonomy


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'feedback.db'}"


# --- the shared scenarios, on SQLite -------------------------------------------------------------


def test_migrations_up_from_empty(tmp_path: Path) -> None:
    check_migrations_from_empty(sqlite_url(tmp_path))


def test_concurrent_submissions_neither_lost_nor_duplicated(tmp_path: Path, taxonomy: Taxonomy) -> None:
    check_concurrent_submissions(sqlite_url(tmp_path), taxonomy)


def test_a_writer_killed_mid_transaction_leaves_no_half_item(tmp_path: Path, taxonomy: Taxonomy) -> None:
    check_crash_mid_write(sqlite_url(tmp_path), taxonomy, tmp_path)


def test_unauthorised_and_malformed_writes_are_refused(tmp_path: Path, taxonomy: Taxonomy) -> None:
    check_refused_writes(sqlite_url(tmp_path), taxonomy)


def test_tokens_are_stored_hashed_and_the_audit_trail_is_append_only(tmp_path: Path, taxonomy: Taxonomy) -> None:
    check_tokens_hashed_and_audit_append_only(sqlite_url(tmp_path), taxonomy)
    files = sorted(tmp_path.glob("feedback.db*"))  # the database and its write-ahead log
    assert files and not any(b"tgf_" in path.read_bytes() for path in files)  # no raw token anywhere


# --- the store's own behaviour --------------------------------------------------------------------


def test_a_store_without_the_schema_is_refused_naming_init(tmp_path: Path, taxonomy: Taxonomy) -> None:
    with pytest.raises(FeedbackError, match=r"no feedback database at .*tiergate feedback init"):
        FeedbackStore.open(sqlite_url(tmp_path), taxonomy)
    (tmp_path / "feedback.db").touch()
    with pytest.raises(FeedbackError, match="has no feedback schema; run: tiergate feedback init"):
        FeedbackStore.open(sqlite_url(tmp_path), taxonomy)


def test_urls_are_read_strictly_and_never_shown_with_a_password(tmp_path: Path) -> None:
    url = parse_url("postgresql://reviewer:s3cret@db.internal:5432/feedback")
    assert url.drivername == "postgresql+psycopg"
    assert "s3cret" not in redact(url) and "***" in redact(url)
    query = parse_url("postgresql://reviewer@db.internal/feedback?password=s3cret&sslpassword=k3y&sslmode=require")
    assert "s3cret" not in redact(query) and "k3y" not in redact(query)  # psycopg reads ?password=
    assert "sslmode=require" in redact(query)
    assert parse_url(str(tmp_path / "fb.db")).drivername == "sqlite"
    for bad, message in [
        ("mysql://x@y/z", "unsupported database 'mysql'"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///file::memory:?uri=true", "in-memory"),  # SQLite URI forms were taken for files
        ("sqlite:////tmp/fb.db?mode=memory&uri=true", "in-memory"),
        ("postgresql://x:y@host:notaport/db", "cannot read the feedback database URL"),
    ]:
        with pytest.raises(InputDataError, match=message):
            parse_url(bad)


def test_a_reporter_is_one_line_and_scores_are_numbers(tmp_path: Path, taxonomy: Taxonomy) -> None:
    """A reporter with a line break, and scores sent as "0.5" or true, used to be stored as given."""
    from tiergate.feedback.schema import Submission, parse_model

    store = new_store(sqlite_url(tmp_path), taxonomy)
    _, service = principal(store, "svc", "submit")
    for reporter in ("user-1\nadmin", "user-1\r", "a\tb", "x\u2028y"):
        with pytest.raises(InputDataError, match="reporter contains a control character"):
            store.submit(service, submission(reporter=reporter))

    def body(score: object) -> dict[str, object]:
        return {"text": INSULT, "context": "general/message", "predicted": {"scores": {"harassment": score}}}

    for score in ("0.5", True):
        with pytest.raises(InputDataError, match=r"predicted\.scores\.harassment"):
            parse_model(Submission, body(score), "item")
    whole = parse_model(Submission, body(1), "item")
    assert store.submit(service, whole).item.predicted["scores"] == {"harassment": 1.0}
    assert store.submit(service, submission(reason="line one\nline two", reporter="user-1")).created


def test_second_review_is_drawn_for_the_configured_share(tmp_path: Path, taxonomy: Taxonomy) -> None:
    store = new_store(sqlite_url(tmp_path), taxonomy, feedback_settings(second_review_share=0.5))
    _, service = principal(store, "svc", "submit")
    items = [store.submit(service, submission(f"{INSULT} number {index}")).item for index in range(200)]
    drawn = sum(item.second_review for item in items)
    assert 70 <= drawn <= 130  # a stable hash draw at 0.5, not all or nothing
    _, alice = principal(store, "alice", "review")
    _, bob = principal(store, "bob", "review")
    double = next(item for item in items if item.second_review)
    single = next(item for item in items if not item.second_review)
    store.review(alice, double.id, {"harassment": "positive"})
    store.review(alice, single.id, {"harassment": "positive"})
    waiting_for_bob = {item.id for item in store.pending(bob)}
    waiting_for_alice = {item.id for item in store.pending(alice)}
    assert double.id in waiting_for_bob and double.id not in waiting_for_alice  # a second, independent reviewer
    assert single.id not in waiting_for_bob  # one review is enough for it
    boundary = store.submit(service, submission("i might hurt you", source="uncertainty")).item
    assert store.pending(bob, limit=1) == [boundary]  # boundary cases first
    assert len(store.pending()) == len(items) - 1 + 1  # all but the single-reviewed one, plus the boundary case
    store.close()


def test_uncertainty_sampling_takes_predictions_near_a_threshold() -> None:
    thresholds = {"harassment": 0.5, "spam": 0.7, "threats": 0.3}
    scores = {"harassment": 0.46, "spam": 0.1, "threats": 0.35}
    assert near_threshold(scores, thresholds, 0.05) == ["harassment", "threats"]
    assert near_threshold(scores, thresholds, 0.01) == []
    assert near_threshold({"spam": 0.75}, thresholds, 0.05) == ["spam"]  # the margin is inclusive
    with pytest.raises(InputDataError, match="no threshold"):
        near_threshold({"profanity": 0.5}, thresholds, 0.05)
    sampler = UncertaintySampler(thresholds, margin=0.05, rate=0.25, rng=random.Random(7))
    taken = sum(bool(sampler(scores)) for _ in range(2000))
    assert 400 <= taken <= 600  # about a quarter of the boundary predictions
    assert not any(UncertaintySampler(thresholds, 0.05, 1.0)({"spam": 0.1}) for _ in range(50))


def test_agreement_per_item_keeps_only_undisputed_categories() -> None:
    result = item_agreement(
        [
            {"harassment": "positive", "profanity": "positive", "spam": "negative"},
            {"harassment": "negative", "profanity": "positive"},
        ]
    )
    assert (result.reviewers, result.compared, result.agreed) == (2, 2, 1)
    assert result.agreement == 0.5
    assert result.consensus == {"profanity": "positive", "spam": "negative"}
    assert result.disputed == ("harassment",)
    assert item_agreement([{"harassment": "positive"}]).agreement is None  # one review measures nothing


def test_kappa_per_category_matches_the_hand_computed_value() -> None:
    """10 items, two reviewers on harassment: 4 both positive, 3 both negative, 2 only A positive, 1 only
    B positive. p_o = 0.7; p_e = 0.6 * 0.5 + 0.4 * 0.5 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4."""
    a = ["positive"] * 4 + ["negative"] * 3 + ["positive"] * 2 + ["negative"]
    b = ["positive"] * 4 + ["negative"] * 3 + ["negative"] * 2 + ["positive"]
    items = [[{"harassment": x, "spam": "negative"}, {"harassment": y, "spam": "negative"}] for x, y in zip(a, b, strict=True)]
    items.append([{"harassment": "positive"}])  # a single review adds no pair
    table = category_kappa(items, ["harassment", "spam", "threats"])
    assert table["harassment"].pairs == 10
    assert table["harassment"].observed == pytest.approx(0.7)
    assert table["harassment"].kappa == pytest.approx(0.4)
    assert table["spam"].kappa is None and table["spam"].observed == 1.0  # both always negative: kappa undefined
    assert table["threats"].pairs == 0


# --- export back into training ---------------------------------------------------------------------


@pytest.fixture
def reviewed_store(tmp_path: Path, taxonomy: Taxonomy) -> FeedbackStore:
    """Five items: agreed (two reviews), single review, disputed, wholly disputed, unreviewed."""
    store = new_store(sqlite_url(tmp_path), taxonomy)
    _, service = principal(store, "svc", "submit")
    _, alice = principal(store, "alice", "review")
    _, bob = principal(store, "bob", "review")
    ids = [
        store.submit(service, submission(text, context=context)).item.id
        for text, context in [
            (INSULT, "general/message"),
            ("great product, fast shipping", "general/review"),
            ("shut up you damn fool", "general/message"),
            ("meet me after school, i will find you", "general/message"),
            ("what a lovely day", "general/bio"),
        ]
    ]
    store.review(alice, ids[0], {"harassment": "positive", "threats": "negative"})
    store.review(bob, ids[0], {"harassment": "positive", "threats": "negative", "spam": "negative"})
    store.review(alice, ids[1], {"spam": "negative"})
    store.review(alice, ids[2], {"harassment": "positive", "profanity": "positive"})
    store.review(bob, ids[2], {"harassment": "negative", "profanity": "positive"})
    store.review(alice, ids[3], {"threats": "positive"})
    store.review(bob, ids[3], {"threats": "negative"})
    return store


def test_export_round_trip_keeps_known_and_unknown_labels(
    tmp_path: Path, taxonomy: Taxonomy, reviewed_store: FeedbackStore
) -> None:
    out = tmp_path / "export"
    report = export_feedback(reviewed_store, out)  # the profile's floor: 0.8
    assert report["reviewed_items"] == 4
    assert report["exported"] == 2
    assert report["left_out"] == {"below_agreement": 2, "no_agreed_label": 0}
    records = {record.text: record for record in read_jsonl(out / RECORDS)}
    assert set(records) == {INSULT, "great product, fast shipping"}
    insult = records[INSULT]
    assert insult.labels == ("harassment",)
    assert insult.label_state("threats") is LabelState.NEGATIVE and insult.label_state("spam") is LabelState.NEGATIVE
    assert insult.label_state("profanity") is LabelState.UNKNOWN  # not reviewed: unknown, never a negative
    assert set(insult.unknown) == set(taxonomy.labels) - {"harassment", "threats", "spam"}
    assert (insult.source.generator, insult.source.kind) == ("human", Kind.POSITIVE)
    shop = records["great product, fast shipping"]
    assert shop.labels == () and shop.source.kind is Kind.INNOCUOUS and str(shop.context) == "general/review"
    assert set(taxonomy.labels) - set(shop.unknown) == {"spam"}
    for record in records.values():
        assert source_name(record) == "human" and not screened_negative(record)  # merge: human labels, never screened
    provenance = {row["record"]: row for row in map(json.loads, (out / PROVENANCE).read_text().splitlines())}
    assert provenance[insult.id]["reviewers"] == 2 and provenance[insult.id]["agreement"] == 1.0
    assert provenance[shop.id]["reviewers"] == 1 and provenance[shop.id]["agreement"] is None
    manifest = load_manifest(out, taxonomy)  # labels, taxonomy hash and file digests check out
    assert manifest.counts["records"] == 2 and manifest.dataset == "feedback"
    assert json.loads((out / EXPORT_REPORT).read_text())["by_category"]["harassment"] == {
        "positive": 1,
        "negative": 0,
        "unknown": 1,
    }

    lenient = export_feedback(reviewed_store, tmp_path / "lenient", min_agreement=0.0)
    assert lenient["exported"] == 3 and lenient["left_out"] == {"below_agreement": 0, "no_agreed_label": 1}
    disputed = next(r for r in read_jsonl(tmp_path / "lenient" / RECORDS) if r.text == "shut up you damn fool")
    assert disputed.labels == ("profanity",) and disputed.label_state("harassment") is LabelState.UNKNOWN


def test_export_is_written_whole_or_not_at_all(tmp_path: Path, reviewed_store: FeedbackStore) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("earlier output")
    with pytest.raises(OutputError, match="not empty"):
        export_feedback(reviewed_store, out)
    assert [path.name for path in out.iterdir()] == ["keep.txt"]
    with pytest.raises(InputDataError, match=r"must lie in 0\.\.1"):
        export_feedback(reviewed_store, tmp_path / "other", min_agreement=1.5)
    assert not (tmp_path / "other").exists()
    export_feedback(reviewed_store, out, overwrite=True)
    assert sorted(path.name for path in out.iterdir()) == sorted([RECORDS, PROVENANCE, EXPORT_REPORT, "manifest.json"])


def test_export_never_replaces_the_folder_that_holds_the_database(tmp_path: Path, reviewed_store: FeedbackStore) -> None:
    """`--out` at the SQLite file's folder (or above it) with --overwrite used to replace the folder: the store was gone."""
    for out in (tmp_path, tmp_path.parent):
        with pytest.raises(OutputError, match="overlaps the input"):
            export_feedback(reviewed_store, out, overwrite=True)
    assert (tmp_path / "feedback.db").is_file() and len(reviewed_store.reviewed_items()) == 4
    export_feedback(reviewed_store, tmp_path / "export")  # a folder beside the database is fine


def test_the_export_is_a_merge_input_and_trains_in_every_phase(
    tmp_path: Path, taxonomy: Taxonomy, reviewed_store: FeedbackStore
) -> None:
    from tiergate.components.merge.step import merge_datasets
    from tiergate.profiles import load_profile

    export_feedback(reviewed_store, tmp_path / "export")
    profile = load_profile("local")
    merge_datasets(taxonomy, profile, [tmp_path / "export"], tmp_path / "merged")
    train = {record.id: record for record in read_jsonl(tmp_path / "merged" / "train.jsonl")}
    split = [record for name in ("train", "val", "test") for record in read_jsonl(tmp_path / "merged" / f"{name}.jsonl")]
    assert sorted(record.text for record in split) == sorted([INSULT, "great product, fast shipping"])
    assert all(record.source.generator == "human" and record.unknown for record in split)  # partial labels survive merge
    assert train
    for phase in profile.merge.phases:  # a human record of the train split trains in every phase
        assert {record.id for record in read_jsonl(tmp_path / "merged" / f"{phase}.jsonl")} == set(train), phase


# --- the CLI ------------------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("TIERGATE_FEEDBACK")}
    return subprocess.run(
        [sys.executable, "-m", "tiergate.cli.main", "feedback", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
    )


def test_cli_init_tokens_submit_review_export_kappa(tmp_path: Path) -> None:
    from tiergate.cli.main import app

    db = sqlite_url(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, token: str | None = None) -> str:
        env = {"TIERGATE_FEEDBACK_DB": db, **({"TIERGATE_FEEDBACK_TOKEN": token} if token else {})}
        result = runner.invoke(app, ["feedback", *args], env=env)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.stdout

    assert "schema revision 0001" in invoke("init")
    assert "schema revision 0001" in invoke("init")  # safe to repeat
    service = invoke("token", "create", "--name", "chat-service", "--scope", "submit").strip()
    alice = invoke("token", "create", "--name", "alice", "--scope", "review").strip()
    bob = invoke("token", "create", "--name", "bob", "--scope", "review", "--scope", "submit").strip()
    assert service.startswith("tgf_") and "\n" not in service  # stdout holds the token alone, for $(...)
    listing = invoke("token", "list")
    assert "chat-service\tsubmit\tactive" in listing and "bob\treview,submit\tactive" in listing and "tgf_" not in listing
    assert invoke("submit", INSULT, "--label", "harassment", "--key", "r-1", token=service).strip() == "item 1 stored"
    assert invoke("submit", INSULT, "--label", "harassment", "--key", "r-1", token=service).strip() == (
        "item 1 already stored under this key"
    )
    invoke("review", "1", "--label", "harassment", "--label", "threats=negative", token=alice)
    invoke("review", "1", "--label", "harassment=positive", "--label", "threats=negative", token=bob)
    assert "exported 1 of 1 reviewed items" in invoke("export", "--out", str(tmp_path / "out"))
    assert read_jsonl(tmp_path / "out" / RECORDS)[0].labels == ("harassment",)
    table = json.loads(invoke("kappa", "--json"))
    assert table["harassment"] == {"pairs": 1, "observed": 1.0, "kappa": None}
    invoke("token", "revoke", "--name", "chat-service")
    assert "chat-service\tsubmit\trevoked" in invoke("token", "list")


def test_cli_errors_are_one_line_and_never_show_a_password(tmp_path: Path) -> None:
    db = sqlite_url(tmp_path)
    assert cli("init", "--db", db).returncode == 0
    cases = [
        (("token", "create", "--name", "x", "--scope", "superuser", "--db", db), {}, "unknown scope 'superuser'"),
        (
            ("submit", INSULT, "--label", "harasment", "--db", db),
            {"TIERGATE_FEEDBACK_TOKEN": "tgf_nope"},
            "unknown or revoked token",
        ),
        (("submit", INSULT, "--db", db), {}, "no token"),
        (("export", "--out", str(tmp_path / "out")), {}, "no feedback database: pass --db"),
        (("kappa", "--db", str(tmp_path / "missing.db")), {}, "no feedback database at"),
        (("init", "--db", "postgresql://reviewer@127.0.0.1:1/feedback?password=s3cret"), {}, r"password=%2A%2A%2A"),
        (
            ("init", "--db", "postgresql://reviewer:s3cret@127.0.0.1:1/feedback"),
            {},
            r"postgresql\+psycopg://reviewer:\*\*\*@127.0.0.1:1",
        ),
    ]
    for args, env, message in cases:
        result = cli(*args, env=env)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr and "s3cret" not in result.stderr + result.stdout
        assert re.search(message, result.stderr), (message, result.stderr)
    token = cli("token", "create", "--name", "svc", "--scope", "submit", "--db", db).stdout.strip()
    result = cli("submit", INSULT, "--label", "harasment", "--db", db, env={"TIERGATE_FEEDBACK_TOKEN": token})
    assert result.returncode == 2 and "did you mean 'harassment'" in result.stderr and result.stderr.count("\n") == 1
    for args in ([os.fsdecode(b"you idiot \xff\xfe")], [INSULT, "--reason", os.fsdecode(b"bad \xff")]):  # undecodable argv bytes
        result = cli("submit", *args, "--db", db, env={"TIERGATE_FEEDBACK_TOKEN": token})
        assert result.returncode == 2 and "is not valid UTF-8" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    reviewer = cli("token", "create", "--name", "rev", "--scope", "review", "--db", db).stdout.strip()
    result = cli("review", str(10**22), "--label", "harassment", "--db", db, env={"TIERGATE_FEEDBACK_TOKEN": reviewer})
    assert result.returncode == 2 and result.stderr == f"error: no item {10**22}\n", result.stderr  # not an OverflowError
