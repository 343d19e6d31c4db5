"""Merging public and generated data: folding across sources, caps, coverage in the report."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.dataset_helpers import write_dataset
from tiergate.artifacts import DATASET_REPORT, DATASET_REPORT_MD
from tiergate.components.merge.caps import apply_caps
from tiergate.components.merge.step import merge_datasets
from tiergate.errors import ConfigError, InputDataError
from tiergate.hashing import read_json
from tiergate.profiles import CapSettings, load_profile
from tiergate.records import Context, Kind, Record, Source, make_record, read_jsonl
from tiergate.taxonomy import Taxonomy

GENERAL = Context(audience="general", surface="message")


def _public(taxonomy: Taxonomy, text: str, labels: tuple[str, ...], dataset: str, covers: tuple[str, ...]) -> Record:
    source = Source(
        generator="public",
        model=dataset,
        prompt_id=f"{dataset}.csv:{abs(hash(text)) % 1000}",
        category=labels[0] if labels else None,
        kind=Kind.POSITIVE if labels else Kind.INNOCUOUS,
    )
    return make_record(text, GENERAL, labels, source, unknown=[name for name in taxonomy.labels if name not in covers])


def _generated(text: str, labels: tuple[str, ...]) -> Record:
    kind = Kind.POSITIVE if labels else Kind.INNOCUOUS
    source = Source(generator="offline", model="m", prompt_id=f"p:{text[:12]}", category=labels[0] if labels else None, kind=kind)
    return make_record(text, GENERAL, labels, source)


def _word(seed: int) -> str:
    """A distinct filler word, so near-duplicate removal leaves every test record alone."""
    return hashlib.sha256(str(seed).encode()).hexdigest()[:24]


def test_caps_per_source_and_category_are_stable_and_counted(taxonomy: Taxonomy) -> None:
    records = [_public(taxonomy, f"hateful post number {i}", ("hate_speech",), "davidson", ("hate_speech",)) for i in range(30)]
    records += [_public(taxonomy, f"ordinary post number {i}", (), "davidson", ("hate_speech",)) for i in range(30)]
    records += [_generated(f"generated threat {i}", ("threats",)) for i in range(10)]
    caps = CapSettings(per_source={"public:davidson": 40}, per_category=12)
    first = apply_caps(records, caps, "salt")
    again = apply_caps(list(reversed(records)), caps, "salt")
    assert sorted(record.id for record in first.kept) == sorted(record.id for record in again.kept)  # order-free
    davidson = [record for record in first.kept if record.source.model == "davidson"]
    assert len(davidson) == 40
    assert sum(1 for record in davidson if record.labels) == 12  # the category cap, within the source cap
    assert sum(1 for record in first.kept if record.source.generator == "offline") == 10  # other sources untouched
    assert first.as_report() == {"public:davidson: category cap 12 (hate_speech)": 18, "public:davidson: source cap 40": 2}
    other_salt = apply_caps(records, caps, "another salt")
    assert {record.id for record in other_salt.kept} != {record.id for record in first.kept}
    assert apply_caps(records, CapSettings(), "salt").kept == records  # no caps: everything, in order


def test_cap_settings_refuse_nonsense() -> None:
    with pytest.raises(ConfigError, match="per_source"):
        load_profile("local", {"merge": {"caps": {"per_source": {"public:x": 0}}}})
    with pytest.raises(ConfigError):
        load_profile("local", {"merge": {"caps": {"per_category": 0}}})


def test_public_and_generated_merge_together(taxonomy: Taxonomy, tmp_path: Path) -> None:
    shared_text = "meet me by the station at noon"
    public = [_public(taxonomy, f"you lot are {_word(i)}", ("hate_speech",), "davidson", ("hate_speech",)) for i in range(20)]
    public += [_public(taxonomy, f"lovely {_word(100 + i)} weather", (), "davidson", ("hate_speech",)) for i in range(20)]
    public.append(_public(taxonomy, shared_text, (), "davidson", ("hate_speech",)))
    generated = [_generated(f"watch your back {_word(200 + i)}", ("threats",)) for i in range(20)]
    generated.append(_generated(shared_text, ("harassment",)))
    inputs = [
        write_dataset(taxonomy, tmp_path / "public", public, "imported"),
        write_dataset(taxonomy, tmp_path / "generated", generated, "generated"),
    ]
    profile = load_profile("local", {"merge": {"caps": {"per_source": {"public:davidson": 30}}}})
    merge_datasets(taxonomy, profile, inputs, tmp_path / "merged")
    merged = [record for split in ("train", "val", "test") for record in read_jsonl(tmp_path / "merged" / f"{split}.jsonl")]
    # The shared text folded across sources: the generated label survives, the public row added nothing to conflict with.
    shared = [record for record in merged if record.text == shared_text]
    assert len(shared) <= 1
    assert all(record.labels == ("harassment",) and record.unknown == () for record in shared)
    report = read_json(tmp_path / "merged" / DATASET_REPORT)
    # After folding the shared text is one (generated) record.
    assert report["input_sources"]["public:davidson"] == 40 and report["input_sources"]["offline"] == 21
    assert sum(report["by_source"][split].get("public:davidson", 0) for split in ("train", "val", "test")) == 30
    assert report["capped"] == {"public:davidson: source cap 30": 10}
    assert report["coverage"]["threats"]["public:davidson"]["unknown"] == 30
    assert report["coverage"]["hate_speech"]["public:davidson"]["unknown"] == 0
    markdown = (tmp_path / "merged" / DATASET_REPORT_MD).read_text()
    assert "## Sources" in markdown and "Known-label coverage" in markdown and "source cap 30" in markdown


def test_merge_refuses_a_record_naming_a_stranger_category(taxonomy: Taxonomy, tmp_path: Path) -> None:
    record = _public(taxonomy, "some text", ("hate_speech",), "davidson", ("hate_speech",))
    forged = record.model_copy(update={"unknown": (*record.unknown, "made_up")})
    dataset = write_dataset(taxonomy, tmp_path / "in", [forged], "imported")
    with pytest.raises(InputDataError, match="made_up"):
        merge_datasets(taxonomy, load_profile("local"), [dataset], tmp_path / "out")


def test_merge_refuses_evaluation_only_sets(taxonomy: Taxonomy, tmp_path: Path) -> None:
    from tiergate.components.generate.importers import import_dataset
    from tiergate.dataset_adapters import load_adapter

    fixtures = Path(__file__).parents[1] / "fixtures" / "public"
    import_dataset(taxonomy, load_adapter("xstest", taxonomy), fixtures / "xstest", tmp_path / "xstest")
    generated = write_dataset(taxonomy, tmp_path / "generated", [_generated("a threat", ("threats",))], "generated")
    with pytest.raises(InputDataError, match="xstest: evaluation-only sets are never trained on"):
        merge_datasets(taxonomy, load_profile("local"), [generated, tmp_path / "xstest"], tmp_path / "merged")


def test_a_cap_naming_no_input_is_reported(taxonomy: Taxonomy, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    generated = write_dataset(
        taxonomy, tmp_path / "generated", [_generated(f"threat {_word(i)}", ("threats",)) for i in range(5)], "g"
    )
    profile = load_profile("local", {"merge": {"caps": {"per_source": {"public:davidsn": 1}}}})
    merge_datasets(taxonomy, profile, [generated], tmp_path / "merged")
    assert "public:davidsn" in caplog.text and "no input holds" in caplog.text


def test_a_broken_record_line_is_one_line_without_its_text(taxonomy: Taxonomy, tmp_path: Path) -> None:
    from tiergate.records import iter_jsonl

    record = _public(taxonomy, "private words here", ("hate_speech",), "davidson", ("hate_speech",))
    line = record.to_json().replace('"unknown":[', '"unknown":["hate_speech",')
    (tmp_path / "records.jsonl").write_text(line + "\n")
    with pytest.raises(InputDataError) as caught:
        list(iter_jsonl(tmp_path / "records.jsonl"))
    message = str(caught.value)
    assert "records.jsonl:1" in message and "both positive and unknown" in message
    assert "\n" not in message and "private words" not in message
