from __future__ import annotations

import re
from pathlib import Path

import pytest

from tiergate.errors import InputDataError, LabelMismatchError
from tiergate.formatting import format_input
from tiergate.labels import check_labels, encode_labels
from tiergate.records import Context, Kind, Source, make_record, normalise_text, read_jsonl, text_id, write_jsonl
from tiergate.taxonomy import Taxonomy

AUDIENCES, SURFACES = ["general", "adult"], ["message", "bio", "listing", "review"]
PREFIX_BUILDING = re.compile(r"\[(GENERAL|ADULT|MESSAGE|BIO|LISTING|REVIEW)\]|\}\]\[\{")
SOURCE = Source(generator="test", model="m", prompt_id="p", category="threats", kind=Kind.POSITIVE)


def test_normalised_identity() -> None:
    assert normalise_text("  Hello\tWORLD \n") == "hello world"
    assert normalise_text("ｆｕｌｌ width") == "full width"  # NFKC
    assert text_id("Hello  world") == text_id("hello world")
    assert text_id("hello world") != text_id("hello world!")


def test_context_parse_and_errors() -> None:
    assert str(Context.parse("Adult/BIO", AUDIENCES, SURFACES)) == "adult/bio"
    assert Context.parse("general:review", AUDIENCES, SURFACES).surface == "review"
    with pytest.raises(InputDataError, match="unknown audience 'kids'"):
        Context.parse("kids/message", AUDIENCES, SURFACES)
    with pytest.raises(InputDataError, match="unknown surface 'email'"):
        Context.parse("general/email", AUDIENCES, SURFACES)
    with pytest.raises(InputDataError, match="AUDIENCE/SURFACE"):
        Context.parse("general", AUDIENCES, SURFACES)
    with pytest.raises(InputDataError) as refused:
        Context.parse("x" * 5_000_000 + "/message", AUDIENCES, SURFACES)
    assert len(str(refused.value)) < 300  # an error never echoes a whole request back


def test_format_input_is_the_single_builder() -> None:
    assert format_input("  hi there ", Context(audience="general", surface="message")) == "[GENERAL][MESSAGE] hi there"
    assert format_input("x", Context(audience="adult", surface="listing")) == "[ADULT][LISTING] x"
    # Nothing else in the code base may assemble the prefix by hand.
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for folder in ("tiergate", "components", "serving", "pipelines")
        for path in (root / folder).rglob("*.py")
        if PREFIX_BUILDING.search(path.read_text(encoding="utf-8")) and path.name != "formatting.py"
    ]
    assert offenders == []


def test_records_store_names_sorted_and_roundtrip(tmp_path: Path) -> None:
    record = make_record(
        "i know where you live", Context(audience="general", surface="message"), ["threats", "harassment", "threats"], SOURCE
    )
    assert record.labels == ("harassment", "threats")
    path = tmp_path / "r.jsonl"
    assert write_jsonl(path, [record]) == 1
    assert read_jsonl(path) == [record]
    path.write_text('{"id": 1}\n', encoding="utf-8")
    with pytest.raises(InputDataError, match=r"r\.jsonl:1: invalid record"):
        read_jsonl(path)


def test_label_vectors(taxonomy: Taxonomy) -> None:
    labels = taxonomy.labels
    vector = encode_labels(["csam", "threats"], labels)
    assert vector[labels.index("csam")] == 1.0 and vector[0] == 1.0 and sum(vector) == 2
    with pytest.raises(InputDataError, match="unknown label 'nope'"):
        encode_labels(["nope"], labels)


def test_label_order_mismatch_is_refused(taxonomy: Taxonomy) -> None:
    """The log's v4–v6 bug: same names, different order. Must be refused, loudly."""
    check_labels(taxonomy.labels, taxonomy.labels, "ok")
    severity_order = [
        "threats",
        "hate_speech",
        "csam",
        "trafficking",
        *[n for n in taxonomy.labels if n not in {"threats", "hate_speech", "csam", "trafficking"}],
    ]
    with pytest.raises(LabelMismatchError, match=r"label ORDER differs .* position 3 \('trafficking' vs 'scam_patterns'\)"):
        check_labels(severity_order, taxonomy.labels, "checkpoint")
    with pytest.raises(LabelMismatchError, match=r"missing \['anti_trans'\]"):
        check_labels(taxonomy.labels[:-1], taxonomy.labels, "checkpoint")
