"""Issue 16 (hostile probe): broken quotes, non-numbers, symlinks, half-written outputs, racing
writers and evaluation-only sets must never turn into silently wrong training data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tiergate.cli.main import app
from tiergate.components.generate.importers import (
    EVALUATION_DATASET,
    ColumnMapping,
    import_dataset,
    import_file,
)
from tiergate.dataset_adapters import load_adapter, validate_adapter_name
from tiergate.errors import ConfigError, InputDataError, OutputError
from tiergate.outputs import exclusive_lock
from tiergate.records import read_jsonl
from tiergate.taxonomy import Taxonomy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "public"
TIERGATE = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tiergate"
DAVIDSON_HEADER = ",count,hate_speech,offensive_language,neither,class,tweet\n"


def _davidson(folder: Path, *rows: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labeled_data.csv").write_text(DAVIDSON_HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return folder


def _report(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / "import_report.json").read_text())["datasets"]["davidson"]


# 1: an unclosed quote ------------------------------------------------------------------------------


def test_an_unclosed_quote_is_a_bad_row_and_the_rows_it_would_swallow_are_still_read(taxonomy: Taxonomy, tmp_path: Path) -> None:
    source = _davidson(
        tmp_path / "s",
        "1,3,0,0,3,2,a calm line",
        '2,3,0,0,3,2,"an unclosed quote',
        "3,3,0,0,3,2,another calm line",
        "4,3,0,3,0,1,a rude line",
        "5,3,0,0,3,2,a third calm line",
        '6,3,0,0,3,2,"a quoted, closed text"',
    )
    out = tmp_path / "out"
    manifest = import_dataset(taxonomy, load_adapter("davidson", taxonomy), source, out, max_bad_fraction=0.5)
    report = _report(out)
    assert report["rows"] == 6 and report["kept"] == 5 and report["bad"] == 1
    assert report["rows"] == report["kept"] + report["bad"] + report["skipped"]
    assert report["bad_rows"][0]["location"] == "labeled_data.csv:3"
    assert "quote opened on line 3" in report["bad_rows"][0]["problem"]
    texts = [record.text for record in read_jsonl(out / "records.jsonl")]
    assert "a rude line" in texts and "a quoted, closed text" in texts and not any("\n" in text for text in texts)
    assert manifest.counts["records"] == 5


def test_a_quoted_text_over_several_lines_is_still_one_good_row(taxonomy: Taxonomy, tmp_path: Path) -> None:
    source = _davidson(tmp_path / "s", "1,3,0,0,3,2,a calm line", '2,3,0,0,3,2,"two\nlines, still one text"')
    import_dataset(taxonomy, load_adapter("davidson", taxonomy), source, tmp_path / "out")
    assert _report(tmp_path / "out")["kept"] == 2


def test_a_quote_open_at_the_end_of_a_user_file_is_named_where_it_opened(taxonomy: Taxonomy, tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text('text,labels\nhello there,\n"unclosed,threats\nyou will regret it,threats\nnice day,\n')
    manifest = import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None), max_bad_fraction=0.5)
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert report["rows"] == 4 and report["kept"] == 3 and report["bad"] == 1
    assert report["bad_rows"] == [{"location": "u.csv:3", "problem": report["bad_rows"][0]["problem"]}]
    assert "quote opened on line 3 is never closed" in report["bad_rows"][0]["problem"]
    assert manifest.counts["records"] == 3


# 5: a non-number where a rule reads a number --------------------------------------------------------


@pytest.mark.parametrize("value", ["NaN", "inf", "abc"])
def test_a_non_number_in_a_field_a_rule_reads_as_a_number_is_a_bad_row(taxonomy: Taxonomy, tmp_path: Path, value: str) -> None:
    source = _davidson(tmp_path / "s", "1,3,0,0,3,2,a calm line", f"2,3,{value},0,3,2,a disputed line")
    import_dataset(taxonomy, load_adapter("davidson", taxonomy), source, tmp_path / "out", max_bad_fraction=0.5)
    report = _report(tmp_path / "out")
    assert report["kept"] == 1 and [row["location"] for row in report["bad_rows"]] == ["labeled_data.csv:3"]
    assert "is not a number" in report["bad_rows"][0]["problem"]


def test_a_non_number_in_summed_columns_is_a_bad_row(taxonomy: Taxonomy, tmp_path: Path) -> None:
    folder = tmp_path / "convabuse"
    folder.mkdir()
    for path in (FIXTURES / "convabuse").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    train = folder / "ConvAbuseEMNLPtrain.csv"
    with train.open(encoding="utf-8", newline="") as handle:
        header, first, *rest = list(csv.reader(handle))
    first[header.index("Annotator1_is_abuse.1")] = "abc"
    with train.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, first, *rest])
    import_dataset(taxonomy, load_adapter("convabuse", taxonomy), folder, tmp_path / "out", max_bad_fraction=1.0)
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())["datasets"]["convabuse"]
    assert [row["location"] for row in report["bad_rows"]] == ["ConvAbuseEMNLPtrain.csv:2"]
    assert "'abc' is not a number" in report["bad_rows"][0]["problem"]


# 7: symlinks out of the source folder ---------------------------------------------------------------


def test_a_file_symlinked_out_of_the_source_folder_is_refused(taxonomy: Taxonomy, tmp_path: Path) -> None:
    outside = _davidson(tmp_path / "outside", "1,3,0,0,3,2,a private line")
    source = tmp_path / "s"
    source.mkdir()
    (source / "labeled_data.csv").symlink_to(outside / "labeled_data.csv")
    with pytest.raises(InputDataError, match=r"outside the source folder .*refusing to follow it"):
        import_dataset(taxonomy, load_adapter("davidson", taxonomy), source, tmp_path / "out")


def test_a_set_folder_symlinked_out_of_the_root_is_refused(tmp_path: Path) -> None:
    _davidson(tmp_path / "elsewhere" / "davidson", "1,3,0,0,3,2,a calm line")
    root = tmp_path / "root"
    root.mkdir()
    (root / "davidson").symlink_to(tmp_path / "elsewhere" / "davidson")
    result = CliRunner().invoke(app, ["data", "import", "--dataset", "all", "--source", str(root), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, InputDataError) and "outside the source folder" in str(result.exception)


# 13: a JSON array cut off ---------------------------------------------------------------------------


def test_a_json_array_cut_off_fails_the_file_naming_where(taxonomy: Taxonomy, tmp_path: Path) -> None:
    adapter = load_adapter("diasafety", taxonomy)
    folder = tmp_path / "diasafety"
    folder.mkdir()
    for path in (FIXTURES / "diasafety").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    train = next(folder.glob("train*.json"))
    text = train.read_text(encoding="utf-8")
    train.write_text(text[: text.index("}", text.index("{")) + 1] + ',\n{"context": "cut', encoding="utf-8")
    with pytest.raises(InputDataError, match=rf"diasafety: {train.name}:\d+#\d+: the JSON array breaks here"):
        import_dataset(taxonomy, adapter, folder, tmp_path / "out")
    train.write_text(text[: text.index("}", text.index("{")) + 1] + ",\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="ends before the JSON array is closed"):
        import_dataset(taxonomy, adapter, folder, tmp_path / "out2")


# 2: evaluation-only sets ----------------------------------------------------------------------------


def test_an_evaluation_set_imported_alone_is_marked_so_merge_can_refuse_it(taxonomy: Taxonomy, tmp_path: Path) -> None:
    manifest = import_dataset(taxonomy, load_adapter("xstest", taxonomy), FIXTURES / "xstest", tmp_path / "x")
    assert manifest.dataset == EVALUATION_DATASET == "evaluation"
    assert manifest.config["datasets"]["xstest"]["role"] == "evaluation"
    train = import_dataset(taxonomy, load_adapter("davidson", taxonomy), FIXTURES / "davidson", tmp_path / "d")
    assert train.dataset == "imported"


# 3, 4, 8, 10: the output folder -----------------------------------------------------------------------


def _import(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "TIERGATE_DEBUG"}
    return subprocess.run([str(TIERGATE), "data", "import", *args], capture_output=True, text=True, env=environment, timeout=120)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if " INFO " not in line]  # progress logs are not errors
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_failed_import_leaves_the_previous_output_and_keeps_its_report_beside_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = ["--dataset", "davidson", "--source", str(FIXTURES / "davidson"), "--out", str(out)]
    assert _import(*good).returncode == 0
    before = (out / "records.jsonl").read_bytes()
    assert "is not empty; pass --overwrite" in _one_line_error(_import(*good))
    broken = _davidson(tmp_path / "broken", "1,3,abc,0,3,2,x", "2,3,abc,0,3,2,y")
    error = _one_line_error(_import("--dataset", "davidson", "--source", str(broken), "--out", str(out), "--overwrite"))
    kept = tmp_path / "out.import_report.json"
    assert f"full report: {kept}" in error and (out / "records.jsonl").read_bytes() == before
    assert json.loads(kept.read_text())["datasets"]["davidson"]["bad"] == 2
    assert _import(*good, "--overwrite").returncode == 0 and not kept.exists()
    assert not [path.name for path in tmp_path.iterdir() if ".tmp-" in path.name]


def test_a_second_writer_to_the_same_out_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    busy = OutputError("busy")
    with exclusive_lock(tmp_path / ".out.lock", busy, OutputError):
        error = _one_line_error(_import("--dataset", "davidson", "--source", str(FIXTURES / "davidson"), "--out", str(out)))
    assert "another process is writing" in error and not out.exists()


def test_out_inside_the_source_an_existing_file_and_an_unwritable_folder_are_one_line_errors(tmp_path: Path) -> None:
    source = _davidson(tmp_path / "s", "1,3,0,0,3,2,a calm line")
    assert "overlaps the input" in _one_line_error(
        _import("--dataset", "davidson", "--source", str(source), "--out", str(source / "o"))
    )
    user = tmp_path / "u.csv"
    user.write_text("text,labels\nhi,\n")
    assert "overlaps the input" in _one_line_error(_import(str(user), "--out", str(tmp_path)))
    (tmp_path / "afile").write_text("x")
    assert "not a folder" in _one_line_error(_import(str(user), "--out", str(tmp_path / "afile")))
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            return  # root ignores permissions; the other cases above still ran
        assert "cannot write" in _one_line_error(_import(str(user), "--out", str(locked / "o")))
    finally:
        locked.chmod(0o700)


def test_a_very_long_dataset_name_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_adapter_name("a" * 5000)
    assert "at most 64 characters" in str(caught.value) and len(str(caught.value)) < 600


# 9: the previous model is verified before it screens ----------------------------------------------------


def test_merge_opens_the_previous_model_through_the_verified_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tiergate.components.merge.screen as screen
    import tiergate.components.merge.step as step
    import tiergate.store as store

    opened: list[str] = []
    screened: list[Path] = []
    verified = tmp_path / "verified"

    @contextmanager
    def fake_previous(location: str, settings: object) -> Iterator[Path]:
        opened.append(location)
        yield verified

    class FakeScreener:
        def __init__(self, taxonomy: Taxonomy, repository: Path, min_score: float) -> None:
            screened.append(repository)

    def stop(*args: object, **kwargs: object) -> None:
        raise InputDataError("stopped before merging")

    monkeypatch.setattr(store, "previous_repository", fake_previous)
    monkeypatch.setattr(screen, "PreviousModelScreener", FakeScreener)
    monkeypatch.setattr(step, "merge_datasets", stop)
    dataset = tmp_path / "d"
    dataset.mkdir()
    (dataset / "manifest.json").write_text("{}")
    tampered = tmp_path / "tampered"
    result = CliRunner().invoke(
        app, ["data", "merge", str(dataset), "--out", str(tmp_path / "m"), "--previous-model", str(tampered)]
    )
    assert isinstance(result.exception, InputDataError) and "stopped before merging" in str(result.exception)
    assert opened == [str(tampered)] and screened == [verified]


# 11: a lost row of a lookup file ----------------------------------------------------------------------


def test_a_lost_lookup_row_is_counted_apart_and_makes_its_comment_a_bad_row(taxonomy: Taxonomy, tmp_path: Path) -> None:
    folder = tmp_path / "toxic_spans"
    folder.mkdir()
    for path in (FIXTURES / "toxic_spans").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    with (folder / "annotations.csv").open(encoding="utf-8", newline="") as handle:
        header, first, *rest = list(csv.reader(handle))
    comment = first[header.index("comment_id")]
    broken = ",".join(first) + ",an extra field"  # the wrong number of fields: an unreadable annotation
    (folder / "annotations.csv").write_text(
        "\n".join([",".join(header), broken, *(",".join(row) for row in rest)]) + "\n", encoding="utf-8"
    )
    import_dataset(taxonomy, load_adapter("toxic_spans", taxonomy), folder, tmp_path / "out", max_bad_fraction=1.0)
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())["datasets"]["toxic_spans"]
    assert report["rows"] == report["kept"] + report["bad"] + report["skipped"]
    assert report["lookup_bad"] == 1 and report["lookup_files"]["annotations.csv"]["bad"] == 1
    assert f"affects rows whose comment_id is {comment!r}" in report["lookup_bad_rows"][0]["problem"]
    assert [row["problem"][:30] for row in report["bad_rows"]] == [f"its comment_id {comment!r} has an"[:30]]


# 12: user files ---------------------------------------------------------------------------------------


def test_a_user_file_with_a_duplicate_column_is_refused(taxonomy: Taxonomy, tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("text,labels,text\na,threats,b\n")
    with pytest.raises(InputDataError, match=r"duplicate column names \['text'\]"):
        import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None))
    path = tmp_path / "u.jsonl"
    path.write_text('{"text": "a", "labels": [], "text": "b"}\n{"text": "c", "labels": []}\n')
    with pytest.raises(InputDataError, match=r"u.jsonl:1: not JSON \(duplicate keys \['text'\]\)"):
        import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None))


@pytest.mark.parametrize("labels", ["NaN", "null"])
def test_null_labels_in_a_user_file_are_a_bad_row_not_a_negative(taxonomy: Taxonomy, tmp_path: Path, labels: str) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text(f'{{"text": "a", "labels": []}}\n{{"text": "b", "labels": {labels}}}\n')
    with pytest.raises(InputDataError, match=r"u.jsonl:2: labels is null or missing"):
        import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None))
    path.write_text(
        f'{{"text": "a", "labels": [], "kind": "innocuous"}}\n{{"text": "b", "labels": {labels}, "kind": "hard_negative"}}\n'
    )
    manifest = import_file(taxonomy, path, tmp_path / "kinds", ColumnMapping(context=None, kind="kind"))
    assert manifest.counts["records"] == 2  # a negative kind says what a null labels value means


# 6: ConvAbuse: abuse aimed at the agent is never a known harassment negative ------------------------------


def test_an_abusive_turn_with_one_harassment_vote_leaves_harassment_unknown(taxonomy: Taxonomy, tmp_path: Path) -> None:
    folder = tmp_path / "convabuse"
    folder.mkdir()
    for path in (FIXTURES / "convabuse").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    train = folder / "ConvAbuseEMNLPtrain.csv"
    with train.open(encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    abusive = list(rows[1])  # three annotators: abusive, intellectual insult
    for annotator in ("Annotator2", "Annotator5", "Annotator8"):
        abusive[header.index(f"{annotator}_intellectual")] = "0"
        abusive[header.index(f"{annotator}_sexist")] = "1"
    abusive[header.index("Annotator2_intellectual")] = "1"  # one annotator still says: an insult to the agent
    with train.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, rows[0], abusive, *rows[2:]])
    import_dataset(taxonomy, load_adapter("convabuse", taxonomy), folder, tmp_path / "out")
    record = next(r for r in read_jsonl(tmp_path / "out" / "records.jsonl") if r.source.prompt_id == "ConvAbuseEMNLPtrain.csv:3")
    assert record.label_state("hate_speech").value == "positive"
    assert record.label_state("harassment").value == "unknown"
