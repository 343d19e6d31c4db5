from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.dataset_helpers import write_dataset
from tiergate.components.generate.step import generate_category
from tiergate.components.merge.dedupe import fold_exact, remove_near_duplicates
from tiergate.components.merge.screen import KeywordScreener, screen
from tiergate.components.merge.splits import assign_splits, split_of
from tiergate.components.merge.step import merge_datasets
from tiergate.datasets import load_manifest
from tiergate.errors import InputDataError, LabelMismatchError
from tiergate.profiles import Profile, load_profile
from tiergate.records import Context, Kind, Record, Source, make_record, read_jsonl
from tiergate.taxonomy import Taxonomy

GENERAL = Context(audience="general", surface="message")
ADULT = Context(audience="adult", surface="message")


def _record(
    text: str,
    labels: tuple[str, ...] = (),
    kind: Kind = Kind.POSITIVE,
    category: str | None = "threats",
    context: Context = GENERAL,
    origin: str | None = None,
) -> Record:
    source = Source(
        generator="test", model="m", prompt_id=f"p:{text[:10]}:{kind.value}", category=category, kind=kind, origin_id=origin
    )
    return make_record(text, context, labels, source)


def test_fold_unions_labels_and_quarantines_conflicting_negatives() -> None:
    records = [
        _record("you are worthless, i know where you live", ("threats",)),
        _record("You are worthless,  i know where you live", ("harassment",), category="harassment"),
        _record("you are worthless, i know where you live", (), kind=Kind.HARD_NEGATIVE),
        _record("you are worthless, i know where you live", ("threats",), context=ADULT),
        _record("see you at the cafe", (), kind=Kind.INNOCUOUS),
        _record("see you at the cafe", (), kind=Kind.INNOCUOUS),
    ]
    folded = fold_exact(records)
    texts = {(record.id, str(record.context)): record.labels for record in folded.records}
    assert len(folded.records) == 3
    assert sorted(texts.values()) == [(), ("harassment", "threats"), ("threats",)]
    assert folded.folded_multilabel == 1
    assert [item.reason for item in folded.quarantined] == [
        "conflict: same text and context is a positive for harassment, threats"
    ]


def test_poisoned_negatives_are_quarantined_not_trained_on(taxonomy: Taxonomy) -> None:
    """docs/lessons.md#poisoned-seed: coercive 'negatives' taught the model that coercion is safe. Screening catches them."""
    records = [
        _record("pay by friday or you will regret it", (), kind=Kind.HARD_NEGATIVE),  # own-category signal
        _record("damn, running late", (), kind=Kind.INNOCUOUS, category="spam"),  # innocuous: any signal
        _record("damn, running late", (), kind=Kind.INNOCUOUS, category="spam", context=ADULT),  # profanity allowed in adult
        _record("following up on my booking", (), kind=Kind.HARD_NEGATIVE, category="harassment"),
        _record("you will regret this", ("threats",)),  # positives never screened
    ]
    kept, quarantined = screen(records, [KeywordScreener(taxonomy)])
    assert [item.record.text for item in quarantined] == ["pay by friday or you will regret it", "damn, running late"]
    assert "threats signals ['you will regret']" in quarantined[0].reason
    assert "profanity signals ['damn']" in quarantined[1].reason
    assert len(kept) == 3


def test_near_duplicates_dropped_only_with_identical_labels(local_profile: Profile) -> None:
    settings = local_profile.merge.near_duplicate.model_copy(update={"threshold": 0.7})
    base = "hey alex, i know where you live so watch your back tonight"
    records = [
        _record(base, ("threats",)),
        _record(base + "!", ("threats",)),  # near copy, same labels -> dropped
        _record(base + " ok", ("harassment", "threats")),  # near copy, other labels -> kept, flagged
        _record(base + "?", ("threats",), kind=Kind.PERTURBATION, origin="x"),  # perturbations are exempt
        _record("completely different text about the weather today", ()),
    ]
    result = remove_near_duplicates(records, settings)
    assert [record.text for record in result.removed] == [base + "!"]
    assert len(result.records) == 4 and len(result.conflicting_pairs) == 1
    disabled = remove_near_duplicates(records, settings.model_copy(update={"enabled": False}))
    assert len(disabled.records) == 5


def test_splits_are_stable_when_data_is_added_or_removed(local_profile: Profile) -> None:
    settings = local_profile.merge.splits
    rng = random.Random(0)
    texts = [f"message number {i} {rng.random()}" for i in range(3000)]
    records = [_record(text, ("spam",), category="spam") for text in texts]
    before = {record.id: name for name, subset in assign_splits(records[:2000], settings).items() for record in subset}
    after = {record.id: name for name, subset in assign_splits(records[500:], settings).items() for record in subset}
    shared = set(before) & set(after)
    assert len(shared) == 1500
    assert all(before[key] == after[key] for key in shared)
    counts = {name: sum(1 for value in after.values() if value == name) for name in ("train", "val", "test")}
    for name in ("train", "val", "test"):
        assert abs(counts[name] / 2500 - getattr(settings, name)) < 0.04, name
    # A perturbed twin follows its origin's split, whatever its own text hashes to.
    origin = records[0]
    twin = _record("m3ssage numb3r zero", ("spam",), kind=Kind.PERTURBATION, category="spam", origin=origin.id)
    assert split_of(twin.source.origin_id or "", settings) == split_of(origin.id, settings)
    assert {name for name, subset in assign_splits([origin, twin], settings).items() if subset} == {before[origin.id]}
    resalted = settings.model_copy(update={"salt": "other"})
    assert sum(split_of(text, settings) != split_of(text, resalted) for text in texts[:200]) > 20


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy) -> Path:
    root = tmp_path_factory.mktemp("generated")
    profile = load_profile("local")
    for name in taxonomy.labels:
        generate_category(taxonomy, profile, name, root / name)
    return root


def test_merge_end_to_end_is_byte_identical(generated: Path, taxonomy: Taxonomy, local_profile: Profile, tmp_path: Path) -> None:
    inputs = sorted(path for path in generated.iterdir() if path.is_dir())
    first = merge_datasets(taxonomy, local_profile, inputs, tmp_path / "a")
    merge_datasets(taxonomy, local_profile, list(reversed(inputs)), tmp_path / "b")
    for name in first.files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    manifest = load_manifest(tmp_path / "a", taxonomy)
    assert manifest.smoke_test
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert set(report["per_category"]) == set(taxonomy.labels)
    assert report["quarantined"] == 0  # the offline generator's negatives are clean
    assert report["multilabel_records"] > 0
    assert report["overlap_rates"]["configured"]["doxxing->harassment"] == 0.65
    assert 0.4 < report["overlap_rates"]["realised"]["doxxing->harassment"] < 0.9

    phases = {name: read_jsonl(tmp_path / "a" / f"{name}.jsonl") for name in ("phase1", "phase2", "phase3")}
    train = read_jsonl(tmp_path / "a" / "train.jsonl")
    assert {r.source.kind for r in phases["phase1"]} == {Kind.POSITIVE, Kind.CONTEXT, Kind.INNOCUOUS}
    assert {r.source.kind for r in phases["phase2"]} == {Kind.POSITIVE, Kind.CONTEXT, Kind.INNOCUOUS, Kind.HARD_NEGATIVE}
    assert phases["phase3"] == train
    val_ids = {r.id for r in read_jsonl(tmp_path / "a" / "val.jsonl")}
    test_ids = {r.id for r in read_jsonl(tmp_path / "a" / "test.jsonl")}
    train_ids = {r.id for r in train}
    assert not (train_ids & test_ids) and not (train_ids & val_ids) and not (val_ids & test_ids)
    assert "# tiergate dataset report" in (tmp_path / "a" / "report.md").read_text()


def test_min_support_warning(generated: Path, taxonomy: Taxonomy, tmp_path: Path) -> None:
    profile = load_profile("local", {"merge": {"min_test_support": 1000}})
    merge_datasets(taxonomy, profile, [generated / "threats", generated / "spam"], tmp_path / "merged")
    report = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert {item["category"] for item in report["low_support"]} == set(taxonomy.labels)
    assert "not measurable" in (tmp_path / "merged" / "report.md").read_text()


def test_merge_quarantines_poisoned_input_and_reports_it(taxonomy: Taxonomy, local_profile: Profile, tmp_path: Path) -> None:
    poisoned = [_record(f"tribute is late {i}, you will regret it", (), kind=Kind.HARD_NEGATIVE) for i in range(5)]
    clean_texts = [
        "following up about my booking",
        "the cafe opens at nine",
        "thanks for the quick reply",
        "is parking available nearby?",
        "my train is delayed again",
    ]
    clean = [_record(text, (), kind=Kind.HARD_NEGATIVE, category="harassment") for text in clean_texts]
    dataset = write_dataset(taxonomy, tmp_path / "in", poisoned + clean)
    manifest = merge_datasets(taxonomy, local_profile, [dataset], tmp_path / "out")
    assert manifest.counts["quarantined"] == 5
    rows = [json.loads(line) for line in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert all("threats signals" in row["reason"] for row in rows)
    assert sum(manifest.counts["splits"].values()) == 5


def test_keyword_colabels_are_off_by_default(taxonomy: Taxonomy, taxonomy_dict: dict, tmp_path: Path) -> None:
    from tiergate.taxonomy import parse_taxonomy

    taxonomy_dict["categories"][32]["colabel_rules"] = [{"keywords": ["never be a real"], "label": "hate_speech"}]
    with_rules = parse_taxonomy(taxonomy_dict)
    dataset = write_dataset(
        with_rules, tmp_path / "in", [_record("this will never be a real road", ("anti_trans",), category="anti_trans")]
    )
    off = merge_datasets(with_rules, load_profile("local"), [dataset], tmp_path / "off")
    merge_datasets(with_rules, load_profile("local", {"merge": {"keyword_colabel_rules": True}}), [dataset], tmp_path / "on")
    labels = {
        name: [r.labels for split in ("train", "val", "test") for r in read_jsonl(tmp_path / name / f"{split}.jsonl")]
        for name in ("off", "on")
    }
    assert labels["off"] == [("anti_trans",)] and labels["on"] == [("anti_trans", "hate_speech")]
    assert off.config["profile"]["merge"]["keyword_colabel_rules"] is False


def test_merge_refuses_other_taxonomies_and_tampered_files(taxonomy: Taxonomy, local_profile: Profile, tmp_path: Path) -> None:
    dataset = write_dataset(taxonomy, tmp_path / "in", [_record("you will regret it", ("threats",))])
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["labels"] = list(reversed(manifest["labels"]))
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LabelMismatchError, match="label ORDER differs"):
        merge_datasets(taxonomy, local_profile, [dataset], tmp_path / "out")
    dataset = write_dataset(taxonomy, tmp_path / "in2", [_record("you will regret it", ("threats",))])
    with (dataset / "records.jsonl").open("a") as handle:
        handle.write("\n")
    with pytest.raises(InputDataError, match="does not match manifest"):
        merge_datasets(taxonomy, local_profile, [dataset], tmp_path / "out")
    with pytest.raises(InputDataError, match="not a tiergate dataset"):
        merge_datasets(taxonomy, local_profile, [tmp_path], tmp_path / "out")
    with pytest.raises(InputDataError, match="at least one input"):
        merge_datasets(taxonomy, local_profile, [], tmp_path / "out")


def test_a_disguised_copy_of_a_regression_vector_is_kept_out_of_training(taxonomy: Taxonomy) -> None:
    """What the model reads decides leakage: a fullwidth or leetspeak copy of a vector is the vector."""
    from tiergate.components.merge.leakage import exclude_vectors
    from tiergate.evasion import TRANSFORMS
    from tiergate.paths import project_path
    from tiergate.regression import load_suites

    suites = load_suites(project_path("config/regression"), taxonomy)
    vector = next(vector.text for suite in suites if suite.suite == "positives" for vector in suite.vectors)
    disguised = [TRANSFORMS[name](vector) for name in ("fullwidth", "leetspeak", "cyrillic_homoglyphs", "zero_width")]
    records = [_record(text, ("threats",)) for text in [*disguised, "see you at the cafe"]]
    kept, leaked = exclude_vectors(records, suites, load_profile("local").merge.leakage)
    assert [record.text for record in kept] == ["see you at the cafe"]
    assert len(leaked) == 4 and all("eval leakage" in item.reason for item in leaked)
