"""Import user-labelled data (CSV, JSONL, Parquet) with a column mapping, validated against the taxonomy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tiergate.datasets import DatasetManifest, file_entry, write_manifest
from tiergate.errors import InputDataError
from tiergate.records import Context, Kind, Record, Source, make_record, record_sort_key, write_jsonl
from tiergate.taxonomy import Taxonomy

FORMATS = ("csv", "jsonl", "parquet")


@dataclass(frozen=True)
class ColumnMapping:
    text: str = "text"
    labels: str = "labels"
    context: str | None = "context"
    kind: str | None = None
    label_separator: str = ","
    default_context: str = "general/message"


def _read_rows(path: Path, file_format: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]], list[str]]:
    """(columns, (row number, row) pairs, problems found while reading). Rows are numbered as a person
    finds them: CSV data rows from 1, JSONL by line. Nothing is cut or converted on the way: a NUL byte
    or a line that is not a JSON object is a problem naming its line, never a shortened or skipped row."""
    if file_format == "auto":
        suffix = path.suffix.lower().lstrip(".")
        file_format = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    if file_format not in FORMATS:
        raise InputDataError(f"{path}: unknown format {file_format!r}; use one of {', '.join(FORMATS)}")
    if file_format == "jsonl":
        return _read_jsonl(path)
    problems: list[str] = []
    try:
        if file_format == "csv":
            raw = path.read_bytes()
            for line_number, line in enumerate(raw.split(b"\n"), start=1):
                if b"\x00" in line:
                    problems.append(f"line {line_number}: NUL byte (a CSV reader would cut the text there)")
            if problems:
                return [], [], problems
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError) as error:
        raise InputDataError(f"{path}: cannot read as {file_format}: {' '.join(str(error).split())[:300]}") from None
    rows = list(enumerate(frame.to_dict(orient="records"), start=1))
    return [str(column) for column in frame.columns], rows, problems


def _read_jsonl(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]], list[str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputDataError(f"{path}: cannot read as jsonl: {error}") from None
    rows: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    columns: dict[str, None] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as error:
            problems.append(f"line {line_number}: not JSON ({' '.join(str(error).split())[:80]})")
            continue
        if not isinstance(value, dict):
            problems.append(f"line {line_number}: a JSON {type(value).__name__}, not an object")
            continue
        columns.update(dict.fromkeys(value))
        rows.append((line_number, value))
    return list(columns), rows, problems


def _text(value: Any) -> str:
    """The text exactly as given: a missing, null or non-string value is an error, never its repr
    ("nan", "True", "['a']" would otherwise become a labelled example)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        raise ValueError("missing text")
    if not isinstance(value, str):
        raise ValueError(f"text is a {type(value).__name__}, not a string")
    if "\x00" in value:
        raise ValueError("text contains a NUL character")
    return value.strip()


def _labels(value: Any, separator: str) -> list[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(separator) if part.strip()]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [str(part).strip() for part in value if str(part).strip()]
    raise ValueError(f"labels must be a string or a list, got {type(value).__name__}")


def import_file(
    taxonomy: Taxonomy, path: Path, out_dir: Path, mapping: ColumnMapping, file_format: str = "auto"
) -> DatasetManifest:
    """Validate every row (all problems reported at once, by row number) and write a dataset."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"import file not found: {path}")
    columns, rows, problems = _read_rows(path, file_format)
    if not rows and not problems:
        raise InputDataError(f"{path}: no rows to import (a header alone, or an empty file)")
    needed = [mapping.text, mapping.labels] + ([mapping.kind] if mapping.kind else [])
    missing = [column for column in needed if column not in columns]
    if missing and not problems:
        raise InputDataError(f"{path}: missing columns {missing}; found {columns}")
    known = set(taxonomy.labels)
    records: list[Record] = []
    for row_number, row in rows:
        try:
            text = _text(row.get(mapping.text))
            labels = _labels(row.get(mapping.labels), mapping.label_separator)
            raw_context = row.get(mapping.context) if mapping.context and mapping.context in columns else None
            context = Context.parse(
                str(raw_context or mapping.default_context), taxonomy.contexts.audiences, taxonomy.contexts.surfaces
            )
            kind = Kind(str(row[mapping.kind])) if mapping.kind else (Kind.POSITIVE if labels else Kind.INNOCUOUS)
        except (ValueError, InputDataError) as error:
            problems.append(f"row {row_number}: {error}")
            continue
        unknown = sorted(set(labels) - known)
        if not text:
            problems.append(f"row {row_number}: empty text")
        elif unknown:
            problems.append(f"row {row_number}: unknown labels {unknown}")
        elif kind is Kind.POSITIVE and not labels:
            problems.append(f"row {row_number}: kind positive but no labels")
        else:
            source = Source(
                generator="import",
                model=path.name,
                prompt_id=f"{path.name}:{row_number}",
                category=labels[0] if labels else None,
                kind=kind,
            )
            records.append(make_record(text, context, labels, source))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InputDataError(f"{path}: {len(problems)} invalid row(s): {shown}")
    records.sort(key=record_sort_key)
    out_dir = Path(out_dir)
    records_path = out_dir / "records.jsonl"
    write_jsonl(records_path, records)
    manifest = DatasetManifest(
        dataset="imported",
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.labels_sha256,
        files={"records.jsonl": file_entry(records_path, len(records))},
        counts={"records": len(records), "source": path.name},
        config={"mapping": mapping.__dict__, "format": file_format},
    )
    write_manifest(out_dir, manifest)
    return manifest
