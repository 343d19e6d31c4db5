"""Human labels in merge: reviewers' labels win over generated and public ones (reported), disputes between
reviewers are quarantined, human records are never screened or capped away unless named, the eval-leakage
guard still applies to them; the feedback-data input is checked before merge trusts it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.dataset_helpers import write_dataset
from tiergate.artifacts import DATASET_REPORT, DATASET_REPORT_MD, QUARANTINE
from tiergate.components.merge.caps import apply_caps
from tiergate.components.merge.dedupe import fold_exact, remove_near_duplicates
from tiergate.components.merge.feedback_input import NO_FEEDBACK_NOTE, stage_feedback
from tiergate.components.merge.screen import KeywordScreener, screen
from tiergate.components.merge.step import merge_datasets
from tiergate.errors import InputDataError
from tiergate.feedback.export import DATASET, EXPORT_REPORT
from tiergate.hashing import read_json, write_json
from tiergate.profiles import CapSettings, load_profile
from tiergate.records import Context, Kind, LabelState, Record, Source, make_record, read_jsonl
from tiergate.regression import load_suites
from tiergate.taxonomy import Taxonomy

GENERAL = Context(audience="general", surface="message")
INSULT = "you are a useless idiot"


def human(taxonomy: Taxonomy, text: str, known: dict[str, str], item: int, context: Context = GENERAL) -> Record:
    """A reviewed item as `tiergate feedback export` writes it: known only where reviewers labelled."""
    positives = sorted(name for name, state in known.items() if state == "positive")
    kind, item_id = (Kind.POSITIVE if positives else Kind.INNOCUOUS), f"feedback:item:{item}"
    source = Source(generator="human", model="feedback", prompt_id=item_id, category=next(iter(positives), None), kind=kind)
    return make_record(text, context, positives, source, unknown=set(taxonomy.labels) - set(known))


def generated(text: str, labels: tuple[str, ...], kind: Kind | None = None, context: Context = GENERAL) -> Record:
    kind = kind or (Kind.POSITIVE if labels else Kind.INNOCUOUS)
    source = Source(generator="offline", model="m", prompt_id=f"p:{text[:16]}", category=labels[0] if labels else None, kind=kind)
    return make_record(text, context, labels, source)


def public(taxonomy: Taxonomy, text: str, labels: tuple[str, ...], covers: tuple[str, ...]) -> Record:
    source = Source(generator="public", model="davidson", prompt_id="labeled_data.csv:7", category=None, kind=Kind.INNOCUOUS)
    return make_record(text, GENERAL, labels, source, unknown=[name for name in taxonomy.labels if name not in covers])


def word(seed: int) -> str:
    return hashlib.sha256(str(seed).encode()).hexdigest()[:20]


# --- precedence in the fold ------------------------------------------------------------------------


def test_a_human_positive_overrules_a_generated_negative(taxonomy: Taxonomy) -> None:
    folded = fold_exact([generated(INSULT, (), Kind.HARD_NEGATIVE), human(taxonomy, INSULT, {"harassment": "positive"}, 1)])
    assert folded.quarantined == []
    (record,) = folded.records
    assert record.labels == ("harassment",) and record.unknown == ()  # what the generator knew of the rest stays known
    assert record.source.generator == "human" and record.source.kind is Kind.POSITIVE
    (win,) = folded.human_wins
    assert (win.category, win.human, win.other, win.other_source) == ("harassment", "positive", "negative", "offline")
    assert win.human_source == "feedback:item:1" and win.record_id == record.id and win.context == "general/message"


def test_a_human_negative_overrules_a_generated_positive_and_keeps_its_other_labels(taxonomy: Taxonomy) -> None:
    reviewed = human(taxonomy, INSULT, {"threats": "negative", "harassment": "positive"}, 2)
    folded = fold_exact([generated(INSULT, ("threats", "profanity")), reviewed])
    (record,) = folded.records
    assert record.labels == ("harassment", "profanity")  # threats overruled; profanity the reviewers left to the generator
    assert record.label_state("threats") is LabelState.NEGATIVE
    assert {(win.category, win.human, win.other) for win in folded.human_wins} == {
        ("threats", "negative", "positive"),
        ("harassment", "positive", "negative"),
    }
    assert folded.quarantined == []


def test_a_human_label_overrules_a_public_one_and_names_the_set(taxonomy: Taxonomy) -> None:
    folded = fold_exact(
        [
            public(taxonomy, INSULT, ("hate_speech",), ("hate_speech",)),
            human(taxonomy, INSULT, {"hate_speech": "negative", "harassment": "positive"}, 3),
        ]
    )
    (record,) = folded.records
    assert record.labels == ("harassment",) and record.label_state("hate_speech") is LabelState.NEGATIVE
    (win,) = folded.human_wins
    assert (win.category, win.other_source, win.other_prompt) == ("hate_speech", "public:davidson", "labeled_data.csv:7")


def test_no_conflict_where_the_human_leaves_a_category_unknown_or_the_context_differs(taxonomy: Taxonomy) -> None:
    adult = Context(audience="adult", surface="message")
    folded = fold_exact(
        [
            generated(INSULT, ("harassment",)),
            human(taxonomy, INSULT, {"spam": "negative"}, 4),
            human(taxonomy, INSULT, {"harassment": "negative"}, 5, context=adult),
        ]
    )
    assert folded.human_wins == [] and folded.quarantined == []
    by_context = {str(record.context): record for record in folded.records}
    assert by_context["general/message"].labels == ("harassment",) and by_context["general/message"].unknown == ()
    assert by_context["general/message"].source.generator == "human"
    assert by_context["adult/message"].labels == ()


def test_reviewers_who_disagree_are_quarantined_and_the_others_fold_as_before(taxonomy: Taxonomy) -> None:
    folded = fold_exact(
        [
            human(taxonomy, INSULT, {"harassment": "positive"}, 7),
            human(taxonomy, INSULT, {"harassment": "negative", "spam": "negative"}, 6),
            generated(INSULT, ("profanity",)),
        ]
    )
    assert folded.human_conflicts == 2 and folded.human_wins == []
    reasons = {item.record.source.prompt_id: item.reason for item in folded.quarantined}
    expected = "conflict between human labels: harassment [feedback:item:6, feedback:item:7]"
    assert reasons == {"feedback:item:6": expected, "feedback:item:7": expected}
    (record,) = folded.records
    assert record.source.generator == "offline" and record.labels == ("profanity",)
    assert folded.exact_duplicates == 0


def test_agreeing_reviewers_fold_into_one_human_record(taxonomy: Taxonomy) -> None:
    folded = fold_exact(
        [human(taxonomy, INSULT, {"harassment": "positive"}, 8), human(taxonomy, INSULT, {"spam": "negative"}, 9)]
    )
    (record,) = folded.records
    assert record.labels == ("harassment",) and set(taxonomy.labels) - set(record.unknown) == {"harassment", "spam"}
    assert folded.exact_duplicates == 1 and folded.human_wins == [] and folded.quarantined == []


def test_a_human_keeper_gaining_a_positive_becomes_a_positive(taxonomy: Taxonomy) -> None:
    folded = fold_exact([human(taxonomy, INSULT, {"spam": "negative"}, 10), generated(INSULT, ("harassment",))])
    (record,) = folded.records
    assert record.source.generator == "human"
    assert (record.source.kind, record.source.category) == (Kind.POSITIVE, "harassment")  # as the export names a positive


# --- never screened, never capped away unless named -------------------------------------------------


def test_human_negatives_are_never_screened(taxonomy: Taxonomy) -> None:
    text = "nobody likes you, you are pathetic"  # harassment signals: a generated negative with them is quarantined
    reviewed = human(taxonomy, text, {name: "negative" for name in taxonomy.labels}, 11)
    made = generated(text, (), Kind.INNOCUOUS)
    kept, flagged = screen([reviewed, made], [KeywordScreener(taxonomy)])
    assert kept == [reviewed]
    assert [item.record for item in flagged] == [made]


def test_human_records_escape_every_cap_unless_the_profile_names_human(taxonomy: Taxonomy) -> None:
    records = [human(taxonomy, f"insult {word(i)}", {"harassment": "positive"}, i) for i in range(10)]
    records += [generated(f"threat {word(100 + i)}", ("threats",)) for i in range(10)]
    unnamed = apply_caps(records, CapSettings(default_per_source=3, per_category=2), "salt")
    assert sum(record.source.generator == "human" for record in unnamed.kept) == 10
    assert unnamed.as_report() == {"offline: category cap 2 (threats)": 8}
    named = apply_caps(records, CapSettings(per_source={"human": 5}, per_category=4), "salt")
    assert sum(record.source.generator == "human" for record in named.kept) == 4
    assert named.as_report() == {"human: category cap 4 (harassment)": 6, "offline: category cap 4 (threats)": 6}


def test_reviewed_items_are_never_dropped_as_near_copies(taxonomy: Taxonomy) -> None:
    settings = load_profile("local").merge.near_duplicate
    texts = ["you are a useless idiot, honestly", "you are a useless idiot, honestly!!"]
    reviewed = [human(taxonomy, text, {"harassment": "positive"}, i) for i, text in enumerate(texts)]
    made = [generated(text, ("harassment",)) for text in texts]
    assert remove_near_duplicates(reviewed, settings).records == reviewed
    assert len(remove_near_duplicates(made, settings).removed) == 1  # the same pair from a generator: one dropped


# --- the whole merge: leakage, report, refusals -----------------------------------------------------


def _merge(taxonomy: Taxonomy, tmp_path: Path, humans: list[Record], others: list[Record], **profile: object) -> Path:
    inputs = [
        write_dataset(taxonomy, tmp_path / "generated", others, "generated"),
        write_dataset(taxonomy, tmp_path / "feedback", humans, DATASET),
    ]
    merge_datasets(taxonomy, load_profile("local", profile or None), inputs, tmp_path / "merged")
    return tmp_path / "merged"


def test_the_leakage_guard_quarantines_a_reviewed_regression_vector(taxonomy: Taxonomy, tmp_path: Path) -> None:
    suites = load_suites(Path(__file__).parents[2] / "config" / "regression", taxonomy)
    vector = next(vector for suite in suites for vector in suite.vectors if vector.id == "pos-threats-1")
    pasted = human(taxonomy, vector.text, {"threats": "positive"}, 20)
    near = human(taxonomy, vector.text.replace("coming", "arriving"), {"threats": "positive"}, 21)
    keep = human(taxonomy, "see you at the match on sunday", {"threats": "negative"}, 22)
    merged = _merge(taxonomy, tmp_path, [pasted, near, keep], [generated(f"ordinary {word(1)} note", ())])
    quarantined = {row["record"]["source"]["prompt_id"]: row["reason"] for row in map(json.loads, (merged / QUARANTINE).open())}
    assert quarantined["feedback:item:20"].startswith("eval leakage: text is regression vector ")  # or a declared variant
    assert quarantined["feedback:item:21"].startswith("eval leakage: near-duplicate of regression vector ")
    kept = [record for split in ("train", "val", "test") for record in read_jsonl(merged / f"{split}.jsonl")]
    assert [record.source.prompt_id for record in kept if record.source.generator == "human"] == ["feedback:item:22"]


def test_the_report_counts_human_items_and_lists_every_conflict(taxonomy: Taxonomy, tmp_path: Path) -> None:
    humans = [
        human(taxonomy, f"you are {word(i)} and a fool", {"harassment": "positive", "spam": "negative"}, i) for i in range(6)
    ]
    humans.append(human(taxonomy, "nobody here wants you around", {"harassment": "positive"}, 40))
    humans += [
        human(taxonomy, "buy cheap pills now", {"spam": "positive"}, 41),
        human(taxonomy, "buy cheap pills now", {"spam": "negative"}, 42),
    ]
    others = [generated("nobody here wants you around", (), Kind.INNOCUOUS), generated(f"watch out {word(50)}", ("threats",))]
    merged = _merge(taxonomy, tmp_path, humans, others)
    report = read_json(merged / DATASET_REPORT)
    section = report["human_labels"]
    assert sum(section["records"].values()) == 7  # 6 + the one that won; the disputed pair quarantined
    harassment = section["per_category"]["harassment"]
    assert sum(cell["positives"] for cell in harassment.values()) == 7
    assert sum(cell["known"] for cell in section["per_category"]["spam"].values()) == 6  # the reviewers labelled
    assert section["per_category"]["threats"] == {
        split: {"positives": 0, "known": 0} for split in ("train", "val", "test")
    }  # generator-known
    assert section["conflicts_won"] == {"harassment": 1}
    (conflict,) = section["conflicts"]
    assert conflict["human_source"] == "feedback:item:40" and conflict["other_source"] == "offline"
    assert (conflict["human"], conflict["other"]) == ("positive", "negative")
    assert section["disputed_quarantined"] == 2 and section["exports"] == []
    assert report["quarantine_reasons"]["conflict between human labels: spam"] == 2
    markdown = (merged / DATASET_REPORT_MD).read_text()
    assert "## Human labels" in markdown and "feedback:item:40 says positive, offline" in markdown
    assert "| harassment |" in markdown


def test_the_report_shows_what_the_exports_agreement_floor_left_out(taxonomy: Taxonomy, tmp_path: Path) -> None:
    feedback = write_dataset(taxonomy, tmp_path / "feedback", [human(taxonomy, INSULT, {"harassment": "positive"}, 1)], DATASET)
    write_json(
        feedback / EXPORT_REPORT,
        {"reviewed_items": 5, "exported": 1, "left_out": {"below_agreement": 3, "no_agreed_label": 1}, "min_agreement": 0.8},
    )
    generated_dir = write_dataset(taxonomy, tmp_path / "generated", [generated(f"hello {word(2)}", ())], "generated")
    merge_datasets(taxonomy, load_profile("local"), [generated_dir, feedback], tmp_path / "merged")
    section = read_json(tmp_path / "merged" / DATASET_REPORT)["human_labels"]
    assert section["left_out_by_export"] == {"below_agreement": 3, "no_agreed_label": 1}
    assert (
        "1 of 5 reviewed items exported (agreement floor 0.8); left out: below agreement 3, no agreed label 1"
        in (tmp_path / "merged" / DATASET_REPORT_MD).read_text()
    )
    write_json(feedback / EXPORT_REPORT, {"exported": "many"})
    with pytest.raises(InputDataError, match="not a feedback export report"):
        merge_datasets(taxonomy, load_profile("local"), [generated_dir, feedback], tmp_path / "again")


def test_merge_refuses_human_labels_outside_a_feedback_dataset(taxonomy: Taxonomy, tmp_path: Path) -> None:
    dataset = write_dataset(taxonomy, tmp_path / "in", [human(taxonomy, INSULT, {"harassment": "positive"}, 1)], "imported")
    with pytest.raises(InputDataError, match="human labels come only from `tiergate feedback export`"):
        merge_datasets(taxonomy, load_profile("local"), [dataset], tmp_path / "out")


# --- the feedback-data input ------------------------------------------------------------------------


def test_no_feedback_location_is_an_empty_feedback_dataset(taxonomy: Taxonomy, tmp_path: Path) -> None:
    manifest = stage_feedback(taxonomy, load_profile("local"), "  ", tmp_path / "out")
    assert manifest.dataset == DATASET and manifest.counts["records"] == 0 and manifest.notes == [NO_FEEDBACK_NOTE]


def test_an_export_is_staged_whole(taxonomy: Taxonomy, tmp_path: Path) -> None:
    export = write_dataset(taxonomy, tmp_path / "export", [human(taxonomy, INSULT, {"harassment": "positive"}, 1)], DATASET)
    write_json(export / EXPORT_REPORT, {"reviewed_items": 1, "exported": 1, "left_out": {}, "min_agreement": 0.8})
    manifest = stage_feedback(taxonomy, load_profile("local"), str(export), tmp_path / "out")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [EXPORT_REPORT, "manifest.json", "records.jsonl"]
    assert manifest.dataset_sha256 and read_jsonl(tmp_path / "out" / "records.jsonl")[0].source.generator == "human"


def test_what_is_not_an_export_is_refused_before_merge_trusts_it(taxonomy: Taxonomy, tmp_path: Path) -> None:
    profile = load_profile("local")
    made = write_dataset(taxonomy, tmp_path / "generated", [generated(INSULT, ("harassment",))], "generated")
    with pytest.raises(InputDataError, match="a 'generated' dataset, not a feedback export"):
        stage_feedback(taxonomy, profile, str(made), tmp_path / "a")
    forged = write_dataset(taxonomy, tmp_path / "forged", [generated(INSULT, ("harassment",))], DATASET)
    with pytest.raises(InputDataError, match="comes from 'offline', not from reviewers"):
        stage_feedback(taxonomy, profile, str(forged), tmp_path / "b")
    climbing = write_dataset(taxonomy, tmp_path / "climbing", [human(taxonomy, INSULT, {"spam": "negative"}, 1)], DATASET)
    manifest = read_json(climbing / "manifest.json")
    manifest["files"]["../secret.jsonl"] = manifest["files"]["records.jsonl"]
    write_json(climbing / "manifest.json", manifest)
    with pytest.raises(InputDataError, match=r"lists '\.\./secret\.jsonl'"):
        stage_feedback(taxonomy, profile, str(climbing), tmp_path / "c")
    linked = write_dataset(taxonomy, tmp_path / "linked", [human(taxonomy, INSULT, {"spam": "negative"}, 1)], DATASET)
    (linked / "records.jsonl").rename(tmp_path / "elsewhere.jsonl")
    os.symlink(tmp_path / "elsewhere.jsonl", linked / "records.jsonl")
    with pytest.raises(InputDataError, match=r"records\.jsonl is a link"):
        stage_feedback(taxonomy, profile, str(linked), tmp_path / "d")
    with pytest.raises(InputDataError, match="not found or not a folder"):
        stage_feedback(taxonomy, profile, str(tmp_path / "missing"), tmp_path / "e")
    assert not any((tmp_path / name).exists() for name in "abcde")  # nothing half-written
