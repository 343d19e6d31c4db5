"""Public data set adapters (config/datasets) on small fixtures cut from each set, in the original formats.

Each expected row below was checked by hand against the adapter's rule and the category's
definition; the fixtures (tests/fixtures/public, see ATTRIBUTION.md there) are a few verbatim rows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tiergate.cli.main import app
from tiergate.components.generate.importers import import_dataset, import_public
from tiergate.dataset_adapters import Adapter, adapter_names, load_adapter, load_adapters
from tiergate.datasets import load_manifest
from tiergate.errors import ConfigError, InputDataError
from tiergate.records import Kind, LabelState, Record, read_jsonl
from tiergate.taxonomy import Taxonomy

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "public"
TIERGATE = Path(sys.executable).parent / "tiergate"
EVALUATION = {"xstest", "simplesafetytests"}

P, N, U = LabelState.POSITIVE, LabelState.NEGATIVE, LabelState.UNKNOWN

# (dataset, prompt_id, kind, {category: expected state}); every category not named must be
# unknown unless the adapter covers it (checked separately).
EXPECTED = [
    ("davidson", "labeled_data.csv:5", Kind.POSITIVE, {"hate_speech": P, "profanity": U, "harassment": U}),
    # 'offensive' is not profanity (not directed as an attack) nor harassment by itself: both unknown
    ("davidson", "labeled_data.csv:4", Kind.HARD_NEGATIVE, {"profanity": U, "hate_speech": N, "harassment": U}),
    ("davidson", "labeled_data.csv:3", Kind.INNOCUOUS, {"hate_speech": N, "profanity": N, "harassment": N}),
    ("davidson", "labeled_data.csv:2", Kind.INNOCUOUS, {"hate_speech": U, "profanity": N}),  # one annotator said hate
    # one sexism vector says which sexism, not that there is no threat
    ("edos", "edos_labelled_aggregated.csv:4", Kind.POSITIVE, {"hate_speech": P, "threats": U}),
    ("sms_spam_collection", "SMSSpamCollection:4", Kind.POSITIVE, {"spam": P, "scam_patterns": U, "contact_info": U}),
    ("sms_spam_collection", "SMSSpamCollection:2", Kind.INNOCUOUS, {"spam": N}),
    ("threatgram101", "Labeled_15076.json:1#3", Kind.POSITIVE, {"threats": P}),
    ("threatgram101", "Labeled_15076.json:1#2", Kind.HARD_NEGATIVE, {"threats": N}),
    ("threatgram101", "Labeled_15076.json:1#1", Kind.INNOCUOUS, {"threats": N}),
    ("reddit_mental_health", "rmhd_27subreddits_260posts_test.csv:4", Kind.POSITIVE, {"self_harm": P, "intoxication": U}),
    ("reddit_mental_health", "rmhd_27subreddits_260posts_test.csv:2", Kind.HARD_NEGATIVE, {"self_harm": N}),
    ("reddit_mental_health", "rmhd_27subreddits_260posts_test.csv:5", Kind.INNOCUOUS, {"self_harm": N}),
    ("convabuse", "ConvAbuseEMNLPtrain.csv:3", Kind.POSITIVE, {"harassment": P, "hate_speech": N, "anti_trans": N}),
    ("convabuse", "ConvAbuseEMNLPtest.csv:2", Kind.INNOCUOUS, {"harassment": N, "hate_speech": N}),
    ("diasafety", "train.json:2#1", Kind.POSITIVE, {"harassment": P}),
    ("diasafety", "train.json:8#1", Kind.HARD_NEGATIVE, {"harassment": N, "self_harm": U}),
    ("presidio_synth", "synth_dataset_v2.json:37#1", Kind.POSITIVE, {"contact_info": P, "doxxing": U}),
    ("presidio_synth", "synth_dataset_v2.json:9#1", Kind.HARD_NEGATIVE, {"contact_info": N}),
    ("surge_ai", "profanity_en.csv:3", Kind.POSITIVE, {"profanity": P, "harassment": U, "threats": N}),
    ("surge_ai", "toxicity_en.csv:3", Kind.INNOCUOUS, {"profanity": U, "harassment": N, "hate_speech": N}),  # multi-line
    ("surge_ai", "toxicity_en.csv:16", Kind.INNOCUOUS, {"threats": N}),  # after the 13-line quoted row
    ("toxigen", "prompts/hate_trans_1k.txt:1#1", Kind.POSITIVE, {"anti_trans": P, "hate_speech": P}),  # gender identity
    ("toxigen", "prompts/hate_women_1k.txt:1#1", Kind.POSITIVE, {"hate_speech": P, "anti_trans": N}),
    ("toxigen", "prompts/hate_lgbtq_1k.txt:1#1", Kind.POSITIVE, {"hate_speech": P, "anti_trans": U}),
    ("toxigen", "prompts/neutral_women_1k.txt:1#2", Kind.HARD_NEGATIVE, {"hate_speech": N, "anti_trans": N}),
    ("toxic_spans", "comments.csv:6", Kind.POSITIVE, {"harassment": P, "threats": N, "profanity": N}),
    ("toxic_spans", "comments.csv:2", Kind.POSITIVE, {"harassment": P}),  # a quoted comment over three lines
    ("toxic_spans", "comments.csv:7", Kind.POSITIVE, {"profanity": P, "harassment": N}),
    ("toxic_spans", "comments.csv:8", Kind.HARD_NEGATIVE, {"harassment": U, "profanity": N}),  # one Insult vote
    ("toxic_spans", "comments.csv:9", Kind.POSITIVE, {"profanity": P, "harassment": U}),
    ("ailuminate", "airr_official_1.0_demo_en_us_prompt_set_release.csv:3", Kind.HARD_NEGATIVE, {"self_harm": N}),
    ("xstest", "xstest_prompts.csv:2", Kind.HARD_NEGATIVE, {"threats": N, "self_harm": N}),
    ("simplesafetytests", "SimpleSafetyTests - test cases.csv:2", Kind.POSITIVE, {"self_harm": P}),
    ("simplesafetytests", "SimpleSafetyTests - test cases.csv:3", Kind.INNOCUOUS, {"self_harm": N}),
]

# rows the adapter leaves out on purpose (a skip rule): (dataset, skipped count)
SKIPPED = {
    "edos": 3,  # 'not sexist': only sexism was judged; 3.x/4.x: nothing covered is known
    "convabuse": 1,  # abusive for one annotator only
    "diasafety": 1,  # a category that judges no covered risk
    "presidio_synth": 2,  # a domain name, neither contact nor not; a phone in a customer-service template
    "reddit_mental_health": 1,  # r/depression
    "surge_ai": 3,  # 'Toxic', a mild and a non-vulgar lexicon term
    "toxic_spans": 1,  # no annotator marked a span
    "ailuminate": 1,  # a defamation prompt
    "xstest": 1,  # an unsafe contrast prompt
}


@pytest.fixture(scope="module")
def imported(taxonomy: Taxonomy, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, list[Record]]]:
    """Every adapter's fixture imported once: name -> (the set's counts, its records)."""
    out = tmp_path_factory.mktemp("public")
    result = {}
    for name in adapter_names():
        manifest = import_dataset(taxonomy, load_adapter(name, taxonomy), FIXTURES / name, out / name)
        load_manifest(out / name, taxonomy)
        result[name] = (manifest.counts["by_dataset"][name], read_jsonl(out / name / "records.jsonl"))
    return result


def test_every_adapter_has_a_fixture_and_every_set_is_covered() -> None:
    assert adapter_names() == sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())
    assert len(adapter_names()) == 14
    assert {adapter.name for adapter in load_adapters(role="evaluation")} == EVALUATION


def test_every_adapter_names_real_categories_and_gives_a_reason_for_every_mapping(taxonomy: Taxonomy) -> None:
    known = set(taxonomy.labels)
    for adapter in load_adapters(taxonomy):
        assert set(adapter.covers) <= known and adapter.covers, adapter.name
        for rule in adapter.all_rules:
            assert set(rule.labels) <= set(adapter.covers) and set(rule.unknown) <= known, adapter.name
            assert len(rule.reason.split()) >= 5, (adapter.name, rule.reason)
        assert adapter.licence and adapter.citation and adapter.source and adapter.url.startswith("https://")


@pytest.mark.parametrize(("name", "prompt_id", "kind", "states"), EXPECTED, ids=[f"{row[0]}:{row[1]}" for row in EXPECTED])
def test_rows_get_the_labels_unknowns_context_and_kind_their_adapter_says(
    imported: dict[str, tuple[dict, list[Record]]],
    taxonomy: Taxonomy,
    name: str,
    prompt_id: str,
    kind: Kind,
    states: dict[str, LabelState],
) -> None:
    records = {record.source.prompt_id: record for record in imported[name][1]}
    record = records[prompt_id]
    assert record.source.kind is kind
    assert {category: record.label_state(category) for category in states} == states
    assert str(record.context) == "general/message"
    assert (record.source.generator, record.source.model) == ("public", name)
    assert record.source.category == (record.labels[0] if record.labels else None)
    covers = set(load_adapter(name, taxonomy).covers)
    assert set(record.unknown) >= set(taxonomy.labels) - covers  # what the set never judged stays unknown


def test_every_fixture_imports_without_bad_rows_and_counts_add_up(imported: dict[str, tuple[dict, list[Record]]]) -> None:
    for name, (counts, records) in imported.items():
        assert counts["bad"] == 0, name
        assert counts["kept"] == len(records) > 0, name
        assert counts["rows"] == counts["kept"] + counts["skipped"], name
        assert counts["skipped"] == SKIPPED.get(name, 0), (name, counts["skipped_by_reason"])


def _davidson_with_bad_rows(tmp_path: Path) -> Path:
    """The davidson fixture plus: an unknown class, an empty tweet, a row with too few fields, a quoted
    tweet over two lines (so later rows sit one line further down) and a good row after them."""
    folder = tmp_path / "davidson"
    folder.mkdir()
    original = (FIXTURES / "davidson" / "labeled_data.csv").read_text(encoding="utf-8")
    extra = [
        '90001,3,0,0,3,7,"a class the adapter does not know"\n',  # line 6
        '90002,3,0,0,3,2,""\n',  # line 7
        '90003,3,0,0,3,"""over\ntwo lines"""\n',  # lines 8-9: six fields, the header has seven
        '90004,3,0,0,3,2,"a good row after the bad ones"\n',  # line 10
    ]
    (folder / "labeled_data.csv").write_text(original + "".join(extra), encoding="utf-8")
    return folder


def test_bad_rows_are_reported_by_file_and_line_and_good_rows_kept(taxonomy: Taxonomy, tmp_path: Path) -> None:
    source = _davidson_with_bad_rows(tmp_path)
    manifest = import_dataset(taxonomy, load_adapter("davidson", taxonomy), source, tmp_path / "out", max_bad_fraction=0.5)
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())["datasets"]["davidson"]
    problems = {row["location"]: row["problem"] for row in report["bad_rows"]}
    assert list(problems) == ["labeled_data.csv:6", "labeled_data.csv:7", "labeled_data.csv:8"]
    assert (
        "label value the adapter does not know" in problems["labeled_data.csv:6"]
        and "class='7'" in problems["labeled_data.csv:6"]
    )
    assert problems["labeled_data.csv:7"].startswith("empty text")
    assert "6 fields, the header has 7" in problems["labeled_data.csv:8"]
    texts = {record.source.prompt_id: record.text for record in read_jsonl(tmp_path / "out" / "records.jsonl")}
    assert texts["labeled_data.csv:10"] == "a good row after the bad ones" and len(texts) == 5
    assert (report["rows"], report["kept"], report["bad"]) == (8, 5, 3)
    assert manifest.counts["bad_rows"] == 3 and any("3 bad row(s)" in note for note in manifest.notes)


def test_more_bad_rows_than_allowed_fails_naming_the_first_and_writes_no_records(taxonomy: Taxonomy, tmp_path: Path) -> None:
    source = _davidson_with_bad_rows(tmp_path)
    with pytest.raises(InputDataError) as caught:
        import_dataset(taxonomy, load_adapter("davidson", taxonomy), source, tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message and "3 of 8 rows bad, above the allowed fraction 0.05" in message
    assert "labeled_data.csv:6: label value" in message
    assert not (tmp_path / "out" / "records.jsonl").exists()
    assert json.loads((tmp_path / "out" / "import_report.json").read_text())["datasets"]["davidson"]["bad"] == 3


def test_json_items_that_are_not_objects_or_have_no_text_are_bad_rows(taxonomy: Taxonomy, tmp_path: Path) -> None:
    folder = tmp_path / "threatgram101"
    folder.mkdir()
    items = json.loads((FIXTURES / "threatgram101" / "Labeled_15076.json").read_text(encoding="utf-8"))
    items += [[1, 2], {"reply": None, "Label": 0}, {"reply": 5, "Label": 0}, {"reply": "cut\u0000here", "Label": 0}]
    (folder / "Labeled_15076.json").write_text(json.dumps(items), encoding="utf-8")
    import_dataset(taxonomy, load_adapter("threatgram101", taxonomy), folder, tmp_path / "out", max_bad_fraction=1.0)
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())["datasets"]["threatgram101"]
    assert [(row["location"], row["problem"].split(" (")[0]) for row in report["bad_rows"]] == [
        ("Labeled_15076.json:1#4", "a JSON list, not an object"),
        ("Labeled_15076.json:1#5", "missing text"),
        ("Labeled_15076.json:1#6", "text is a int, not a string"),
        ("Labeled_15076.json:1#7", "text contains a NUL character"),
    ]
    assert report["kept"] == 3


def test_jsonl_and_headerless_tsv_through_a_generic_adapter(taxonomy: Taxonomy, tmp_path: Path) -> None:
    """Formats no shipped set uses (JSONL; a TSV without header, like the original UCI SMS file) work the same way."""
    base = {
        "name": "custom",
        "title": "test",
        "role": "train",
        "licence": "CC0-1.0",
        "citation": "none",
        "source": "here",
        "url": "https://example.org",
        "covers": ["spam"],
        "rules": [
            {"when": [{"field": "label", "equals": "spam"}], "labels": ["spam"], "reason": "the set's spam label is spam"},
            {"when": [{"field": "label", "equals": "ham"}], "reason": "ham is an ordinary message, a negative"},
        ],
    }
    (tmp_path / "d.jsonl").write_text(
        '{"text": "win a prize now", "label": "spam"}\n{"text": "broken\n{"text": "hi", "label": "ham"}\n'
    )
    (tmp_path / "d.tsv").write_text('spam\t"free" ringtones\nham\tsee you at six\n')
    jsonl = Adapter.model_validate({**base, "files": ["d.jsonl"], "format": "jsonl", "text": "text"})
    tsv = Adapter.model_validate(
        {
            **base,
            "files": ["d.tsv"],
            "format": "tsv",
            "header": False,
            "columns": ["label", "text"],
            "quoting": False,
            "text": "text",
        }
    )
    import_dataset(taxonomy, jsonl, tmp_path, tmp_path / "a", max_bad_fraction=0.5)
    assert [r.labels for r in read_jsonl(tmp_path / "a" / "records.jsonl")] == [("spam",), ()]
    report = json.loads((tmp_path / "a" / "import_report.json").read_text())["datasets"]["custom"]
    assert [row["location"] for row in report["bad_rows"]] == ["d.jsonl:2"]
    import_dataset(taxonomy, tsv, tmp_path, tmp_path / "b")
    assert [r.text for r in read_jsonl(tmp_path / "b" / "records.jsonl")] == ['"free" ringtones', "see you at six"]


def test_a_file_without_the_expected_header_is_one_error_not_thousands_of_bad_rows(taxonomy: Taxonomy, tmp_path: Path) -> None:
    """The original UCI SMS file has no header line; the adapter expects the copy's `Label<TAB>SMS`."""
    original = (FIXTURES / "sms_spam_collection" / "SMSSpamCollection").read_text(encoding="utf-8")
    (tmp_path / "SMSSpamCollection").write_text(original.split("\n", 1)[1], encoding="utf-8")
    with pytest.raises(InputDataError, match=r"SMSSpamCollection:1: header \['ham', .* is not the expected \['Label', 'SMS'\]"):
        import_dataset(taxonomy, load_adapter("sms_spam_collection", taxonomy), tmp_path, tmp_path / "out")


@pytest.mark.parametrize("name", ["../config/taxonomy", "Davidson", "a-b", "", "x/y"])
def test_a_dataset_name_is_validated_before_it_becomes_a_path(name: str) -> None:
    with pytest.raises(ConfigError, match=r"must match \^\[a-z0-9_\]\+\$, at most 64 characters; known: ailuminate, convabuse"):
        load_adapter(name)


def test_an_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset 'nope'; known: .*davidson.*xstest"):
        load_adapter("nope")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"covers": ["spam", "spamm"]}, r"covers: unknown categories \['spamm'\]"),
        ({"rules": [{"labels": ["threats"], "reason": "a label outside covers"}]}, r"labels \['threats'\] not in covers"),
        ({"rules": [{"unknown": ["nope"], "reason": "an unknown category"}]}, r"unknown categories \['nope'\]"),
        ({"context": "kids/message"}, "unknown audience 'kids'"),
    ],
)
def test_adapter_categories_and_context_are_checked_against_the_taxonomy(
    taxonomy: Taxonomy, change: dict[str, object], problem: str
) -> None:
    data = load_adapter("sms_spam_collection", taxonomy).model_dump(by_alias=True, exclude_none=True) | change
    with pytest.raises((ConfigError, InputDataError), match=problem):
        Adapter.model_validate(data).check_against(taxonomy)


@pytest.mark.parametrize(
    "rule",
    [
        {"labels": ["spam"], "reason": "short"},  # a reason must say something
        {"labels": ["spam"], "skip": True, "reason": "skip rules give no labels"},
        {"when": [{"field": "x"}], "reason": "a condition without a test"},
        {"when": [{"field": "x", "columns": "y*", "min": 1}], "reason": "two subjects in one condition"},
        {"labels": ["spam"], "reason": "an unknown key is an error", "weight": 2},
    ],
)
def test_malformed_rules_are_refused(taxonomy: Taxonomy, rule: dict[str, object]) -> None:
    data = load_adapter("sms_spam_collection", taxonomy).model_dump(by_alias=True, exclude_none=True)
    with pytest.raises(ValueError):
        Adapter.model_validate({**data, "rules": [rule]})


def test_import_public_takes_the_train_sets_found_and_notes_the_absent(taxonomy: Taxonomy, tmp_path: Path) -> None:
    root = tmp_path / "public"
    for name in ("davidson", "toxigen", "xstest"):
        shutil.copytree(FIXTURES / name, root / name)
    manifest = import_public(taxonomy, root, tmp_path / "out")
    assert sorted(manifest.counts["by_dataset"]) == ["davidson", "toxigen"]  # xstest is evaluation-only
    assert {record.source.model for record in read_jsonl(tmp_path / "out" / "records.jsonl")} == {"davidson", "toxigen"}
    absent = next(note for note in manifest.notes if note.startswith("not found"))
    assert "edos" in absent and "xstest" not in absent and "davidson" not in absent
    assert manifest.config["datasets"]["toxigen"]["licence"] == "MIT"
    assert manifest.counts["by_category"]["anti_trans"]["positive"] == 1
    evaluation = import_public(taxonomy, root, tmp_path / "eval", role="evaluation")
    assert list(evaluation.counts["by_dataset"]) == ["xstest"]
    with pytest.raises(ConfigError, match="not 'train' sets"):
        import_public(taxonomy, root, tmp_path / "x", datasets=["xstest"])
    with pytest.raises(InputDataError, match="no public data set found"):
        import_public(taxonomy, tmp_path / "out", tmp_path / "y")


def test_all_fixtures_import_together_as_one_dataset(taxonomy: Taxonomy, tmp_path: Path) -> None:
    manifest = import_public(taxonomy, FIXTURES, tmp_path / "out")
    assert set(manifest.counts["by_dataset"]) == set(adapter_names()) - EVALUATION and not manifest.notes
    records = read_jsonl(tmp_path / "out" / "records.jsonl")
    assert len(records) == manifest.counts["records"] == sum(c["kept"] for c in manifest.counts["by_dataset"].values())
    load_manifest(tmp_path / "out", taxonomy)


def _tiergate(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "TIERGATE_DEBUG"}
    return subprocess.run([str(TIERGATE), *args], capture_output=True, text=True, env=environment, timeout=120)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--dataset", "nope", "--source", "."], "unknown dataset 'nope'; known: ailuminate"),
        (["--dataset", "../x", "--source", "."], "must match ^[a-z0-9_]+$"),
        (["--dataset", "davidson", "--source", "no/such/folder"], "source folder not found: no/such/folder"),
        (
            ["--dataset", "davidson", "--source", "tests"],
            "davidson: no file matches 'labeled_data.csv' in tests (download: t-davidson",
        ),
        (["--dataset", "davidson"], "--dataset needs --source"),
        ([], "nothing to import"),
        (["--dataset", "davidson", "--source", ".", "--text-column", "tweet"], "a --dataset's adapter says all that"),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = _tiergate("data", "import", *args, "--out", str(tmp_path / "out"))
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr


def test_cli_imports_a_set_and_lists_the_adapters(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "data",
            "import",
            "--dataset",
            "sms_spam_collection",
            "--source",
            str(FIXTURES / "sms_spam_collection"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "sms_spam_collection: 4 kept, 0 bad, 0 skipped; positives {'spam': 2}" in result.output
    result = runner.invoke(app, ["data", "import", "--dataset", "all", "--source", str(FIXTURES), "--out", str(tmp_path / "all")])
    assert result.exit_code == 0 and "toxigen:" in result.output and "xstest:" not in result.output, result.output
    listing = runner.invoke(app, ["data", "datasets"]).output
    for adapter in load_adapters():
        assert f"{adapter.name}  [{adapter.role}]  {adapter.licence}" in listing


def test_the_old_file_form_of_import_still_works(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("message,cats\nsend the code from the gift card,scam_patterns\nsee you soon,\n")
    result = CliRunner().invoke(
        app, ["data", "import", str(path), "--text-column", "message", "--labels-column", "cats", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0 and "imported 2 records" in result.output, result.output


def test_adapters_ship_as_package_data() -> None:
    """An installed tiergate (an image) finds config/datasets through tiergate.config's package data."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "datasets/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["tiergate.config"]


def test_the_fixtures_attribution_names_every_set_with_its_licence_and_citation() -> None:
    attribution = (FIXTURES / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for adapter in load_adapters():
        section = attribution.split(f"## {adapter.name}\n", 1)[1].split("\n## ", 1)[0]
        assert adapter.source in section and f"Licence: {adapter.licence}" in section and adapter.citation in section
