from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tiergate.components.generate.importers import ColumnMapping, import_file
from tiergate.datasets import load_manifest
from tiergate.errors import InputDataError
from tiergate.records import Kind, read_jsonl
from tiergate.taxonomy import Taxonomy

ROWS = [
    {"message": "i know where you live", "cats": "threats|harassment", "where": "general/message"},
    {"message": "lovely stay, thank you", "cats": "", "where": "adult/review"},
    {"message": "rates are on my page", "cats": "solicitation", "where": ""},
]
MAPPING = ColumnMapping(text="message", labels="cats", context="where", label_separator="|", default_context="adult/listing")


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_import_formats(taxonomy: Taxonomy, tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame(ROWS)
    path = tmp_path / f"data.{suffix}"
    {
        "csv": lambda: frame.to_csv(path, index=False),
        "jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        "parquet": lambda: frame.to_parquet(path),
    }[suffix]()
    manifest = import_file(taxonomy, path, tmp_path / "out", MAPPING)
    assert manifest.counts["records"] == 3
    load_manifest(tmp_path / "out", taxonomy)
    records = {record.text: record for record in read_jsonl(tmp_path / "out" / "records.jsonl")}
    assert records["i know where you live"].labels == ("harassment", "threats")
    assert records["lovely stay, thank you"].source.kind is Kind.INNOCUOUS
    assert str(records["rates are on my page"].context) == "adult/listing"


def test_jsonl_list_labels(taxonomy: Taxonomy, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "send the code from the gift card", "labels": ["scam_patterns"]}) + "\n")
    import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None))
    assert read_jsonl(tmp_path / "out" / "records.jsonl")[0].labels == ("scam_patterns",)


def test_every_bad_row_is_reported_by_file_and_line(taxonomy: Taxonomy, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    pd.DataFrame(
        [
            {"text": "fine", "labels": "threats", "context": "general/message"},
            {"text": "", "labels": "threats", "context": "general/message"},
            {"text": "x", "labels": "threatz", "context": "general/message"},
            {"text": "y", "labels": "spam", "context": "kids/message"},
        ]
    ).to_csv(path, index=False)
    with pytest.raises(InputDataError) as caught:
        import_file(taxonomy, path, tmp_path / "out", ColumnMapping())
    message = str(caught.value)
    assert "3 of 4 rows bad" in message
    assert "bad.csv:3: empty text" in message and "bad.csv:4: unknown labels ['threatz']" in message
    assert "bad.csv:5: context" in message
    assert not (tmp_path / "out" / "records.jsonl").exists()


def test_missing_columns_and_files(taxonomy: Taxonomy, tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame([{"body": "x"}]).to_csv(path, index=False)
    with pytest.raises(InputDataError, match=r"missing columns \['text', 'labels'\]"):
        import_file(taxonomy, path, tmp_path / "out", ColumnMapping())
    with pytest.raises(InputDataError, match="not found"):
        import_file(taxonomy, tmp_path / "nope.csv", tmp_path / "out", ColumnMapping())
    odd = tmp_path / "d.xlsx"
    odd.write_text("x")
    with pytest.raises(InputDataError, match="unknown format 'xlsx'"):
        import_file(taxonomy, odd, tmp_path / "out", ColumnMapping())


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ({"labels": ["threats"]}, "missing text"),
        ({"text": None, "labels": ["threats"]}, "missing text"),
        ({"text": True, "labels": ["threats"]}, "text is a bool"),
        ({"text": ["a", "b"], "labels": ["threats"]}, "text is a list"),
        ({"text": 7, "labels": ["threats"]}, "text is a int"),
        ({"text": "cut\u0000here", "labels": ["threats"]}, "text contains a NUL character"),
    ],
)
def test_a_text_that_is_not_a_string_is_refused_never_its_repr(
    taxonomy: Taxonomy, tmp_path: Path, line: dict[str, object], problem: str
) -> None:
    """Issue 16: a missing, null or non-string text became "nan", "True" or "['a', 'b']" and was imported as a
    labelled positive."""
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "fine", "labels": ["threats"]}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(InputDataError, match=rf"d.jsonl:2: {problem}"):
        import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None))


def test_one_broken_jsonl_line_is_named_by_its_line(taxonomy: Taxonomy, tmp_path: Path) -> None:
    good = json.dumps({"text": "fine", "labels": ["threats"]})
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([good] * 4 + ['{"text": "broken', good, "[1, 2]", good]) + "\n")
    with pytest.raises(InputDataError) as caught:
        import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None))
    assert "d.jsonl:5: not JSON" in str(caught.value) and "d.jsonl:7: a JSON list" in str(caught.value)
    assert "2 of 8 rows bad" in str(caught.value)


def test_a_nul_byte_in_csv_is_named_not_cut(taxonomy: Taxonomy, tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,labels\nfine,threats\ncut\x00here,threats\n")
    with pytest.raises(InputDataError, match=r"d.csv:3: NUL byte"):
        import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None))


@pytest.mark.parametrize(("name", "content"), [("d.csv", "text,labels\n"), ("d.jsonl", "\n\n")])
def test_a_file_with_no_rows_is_an_error_not_zero_records(taxonomy: Taxonomy, tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputDataError, match="no rows to import"):
        import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None))


def test_good_rows_are_kept_and_bad_ones_reported_below_the_allowed_fraction(taxonomy: Taxonomy, tmp_path: Path) -> None:
    """Issue 16: one bad row no longer rejects the file; it is listed in import_report.json by row."""
    good = [json.dumps({"text": f"fine {index}", "labels": ["threats"]}) for index in range(20)]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([*good[:10], '{"text": "broken', *good[10:]]) + "\n")
    manifest = import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None))
    assert manifest.counts["records"] == 20 and manifest.counts["bad_rows"] == 1
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert report["kept"] == 20 and [(row["location"], row["problem"][:8]) for row in report["bad_rows"]] == [
        ("d.jsonl:11", "not JSON")
    ]
    with pytest.raises(InputDataError, match=r"1 of 21 rows bad, above the allowed fraction 0.01"):
        import_file(taxonomy, path, tmp_path / "strict", ColumnMapping(context=None), max_bad_fraction=0.01)
    assert not (tmp_path / "strict" / "records.jsonl").exists()


def test_a_csv_row_with_a_nul_byte_is_reported_by_line_and_the_others_kept(taxonomy: Taxonomy, tmp_path: Path) -> None:
    rows = [f"fine {index},threats" for index in range(20)]
    path = tmp_path / "d.csv"
    path.write_bytes(
        (
            "text,labels\n" + "\n".join(rows[:5]) + '\n"two\nlines",threats\ncut\x00here,threats\n' + "\n".join(rows[5:]) + "\n"
        ).encode()
    )
    manifest = import_file(taxonomy, path, tmp_path / "out", ColumnMapping(context=None), max_bad_fraction=0.1)
    assert manifest.counts["records"] == 21  # the quoted two-line row is a good row
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert [(row["location"], row["problem"]) for row in report["bad_rows"]] == [("d.csv:9", "NUL byte")]
