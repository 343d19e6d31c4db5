"""The feedback loop back into training, end to end (issue 17): items submitted and reviewed in a SQLite
feedback store → `tiergate feedback export` → staged as the pipeline stages a feedback-data location →
`tiergate data merge` with generated data, one reviewed text contradicting the generator → a tiny model
trains a phase on the result. The dataset report counts the human items per category, the conflict went
the reviewers' way and is reported, and the training set holds the reviewed items."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import tiny_profile
from tests.feedback_helpers import new_store, principal, submission
from tiergate.artifacts import DATASET_REPORT, DATASET_REPORT_MD
from tiergate.components.generate.step import generate_category
from tiergate.components.merge.feedback_input import stage_feedback
from tiergate.components.train.step import train_phase
from tiergate.datasets import load_manifest
from tiergate.feedback.export import EXPORT_REPORT, RECORDS
from tiergate.hashing import read_json
from tiergate.labels import UNKNOWN_TARGET, encode_targets
from tiergate.profiles import load_profile
from tiergate.records import Kind, LabelState, Record, read_jsonl
from tiergate.taxonomy import Taxonomy

pytestmark = pytest.mark.slow
CATEGORIES = ("harassment", "threats", "spam")
SPLITS = ("train", "val", "test")
# (text, context, first review, second review or None): short, non-graphic texts
REVIEWED = [
    ("you are a useless idiot", "general/message", {"harassment": "positive", "threats": "negative"}, "same"),
    ("i know which bus you take home, see you there", "general/message", {"threats": "positive"}, None),
    ("win a free phone, click this link now", "general/message", {"spam": "positive", "harassment": "negative"}, "same"),
    ("great product, fast shipping", "general/review", {"spam": "negative"}, None),
    ("ok see you at practice tomorrow", "general/message", {"harassment": "negative", "threats": "negative"}, None),
    ("shut up, nobody asked you", "general/message", {"harassment": "positive"}, {"harassment": "negative"}),  # disputed
]


def _cli(*args: str, env: dict[str, str] | None = None) -> str:
    from tiergate.cli.main import app

    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def _contested(generated_root: Path) -> Record:
    """A generated harassment hard negative: the text the reviewers will call harassment."""
    records = read_jsonl(generated_root / "harassment" / RECORDS)
    return next(record for record in records if record.source.kind is Kind.HARD_NEGATIVE and not record.labels)


def test_reviewed_items_are_merged_with_precedence_and_trained_on(
    taxonomy: Taxonomy, tiny_base: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    profile = tiny_profile(tiny_base)
    generated = tmp_path / "generated"
    for name in CATEGORIES:
        generate_category(taxonomy, load_profile("local"), name, generated / name)
    contested = _contested(generated)

    # Store → submit → review (two reviewers on some items; one item disputed).
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    store = new_store(url, taxonomy)
    _, service = principal(store, "chat-service", "submit")
    _, alice = principal(store, "alice", "review")
    _, bob = principal(store, "bob", "review")
    items = [*REVIEWED, (contested.text, str(contested.context), {"harassment": "positive"}, "same")]
    for index, (text, context, first, second) in enumerate(items):
        item = store.submit(service, submission(text, key=f"report-{index}", context=context)).item
        store.review(alice, item.id, first)
        if second is not None:
            store.review(bob, item.id, first if second == "same" else second)
    store.close()

    # `tiergate feedback export`, then the pipeline's feedback-data staging of that folder.
    export = tmp_path / "feedback-export"
    assert "exported 6 of 7 reviewed items" in _cli("feedback", "export", "--out", str(export), env={"TIERGATE_FEEDBACK_DB": url})
    exported = read_jsonl(export / RECORDS)
    assert read_json(export / EXPORT_REPORT)["left_out"] == {"below_agreement": 1, "no_agreed_label": 0}
    stage_feedback(taxonomy, profile, str(export), tmp_path / "feedback")

    # `tiergate data merge` with the generated data.
    merged = tmp_path / "merged"
    _cli("data", "merge", str(generated), str(tmp_path / "feedback"), "--out", str(merged))
    report = read_json(merged / DATASET_REPORT)
    section = report["human_labels"]
    kept = {split: read_jsonl(merged / f"{split}.jsonl") for split in SPLITS}
    humans = [record for records in kept.values() for record in records if record.source.generator == "human"]

    # Every exported item is in the splits, and the report counts them per category as the reviewers labelled them.
    assert sorted(record.text for record in humans) == sorted(record.text for record in exported)
    assert sum(section["records"].values()) == len(exported) == 6
    for name in taxonomy.labels:
        by_split = section["per_category"][name]
        labelled = [record for record in exported if record.label_state(name) is not LabelState.UNKNOWN]
        assert sum(cell["known"] for cell in by_split.values()) == len(labelled), name
        assert sum(cell["positives"] for cell in by_split.values()) == sum(name in r.labels for r in labelled), name
    assert sum(cell["positives"] for cell in section["per_category"]["harassment"].values()) == 2
    assert sum(cell["known"] for cell in section["per_category"]["spam"].values()) == 2
    assert section["left_out_by_export"] == {"below_agreement": 1, "no_agreed_label": 0}

    # The conflict went the reviewers' way, and is reported with both sources.
    (won,) = [record for record in humans if record.text == contested.text]
    assert "harassment" in won.labels and won.unknown == ()  # the generator's knowledge of the other categories kept
    assert section["conflicts_won"]["harassment"] >= 1 and set(section["conflicts_won"]) == {"harassment"}
    for conflict in section["conflicts"]:
        assert (conflict["record_id"], conflict["human"], conflict["other"]) == (won.id, "positive", "negative")
        assert conflict["other_source"] == "offline" and conflict["human_source"].startswith("feedback:item:")
    assert contested.text not in {row.text for records in kept.values() for row in records if row.source.generator != "human"}
    markdown = (merged / DATASET_REPORT_MD).read_text()
    assert "## Human labels" in markdown and "says positive, offline" in markdown and "below agreement 1" in markdown

    # A partial human record trains only on what the reviewers labelled.
    shop = next(record for record in humans if record.text == "great product, fast shipping")
    targets = encode_targets(shop, taxonomy.labels)
    assert [name for name, value in zip(taxonomy.labels, targets, strict=True) if value != UNKNOWN_TARGET] == ["spam"]

    # A tiny model trains a phase on it: the reviewed train-split items are in its training set.
    phase1 = read_jsonl(merged / "phase1.jsonl")
    train_humans = {record.id for record in kept["train"] if record.source.generator == "human"}
    assert train_humans and train_humans <= {record.id for record in phase1}
    with caplog.at_level(logging.INFO, logger="tiergate.components.train.step"):
        info = train_phase(taxonomy, profile, merged, "phase1", tmp_path / "checkpoint")
    manifest = load_manifest(merged, taxonomy)
    assert info.dataset_sha256["phase1"] == manifest.files["phase1.jsonl"].sha256
    assert f"phase1: {len(phase1)} train / {len(kept['val'])} val records" in caplog.text
    assert info.epochs and (tmp_path / "checkpoint" / "model.safetensors").is_file()
