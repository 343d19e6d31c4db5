"""Import user-labelled data (CSV, JSONL, Parquet) with a column mapping, validated against the taxonomy."""

from __future__ import annotations

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


def _read_frame(path: Path, file_format: str) -> pd.DataFrame:
    if file_format == "auto":
        suffix = path.suffix.lower().lstrip(".")
        file_format = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    if file_format not in FORMATS:
        raise InputDataError(f"{path}: unknown format {file_format!r}; use one of {', '.join(FORMATS)}")
    try:
        if file_format == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if file_format == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_parquet(path)
    except (ValueError, OSError) as error:
        raise InputDataError(f"{path}: cannot read as {file_format}: {error}") from None


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
    frame = _read_frame(path, file_format)
    needed = [mapping.text, mapping.labels] + ([mapping.kind] if mapping.kind else [])
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise InputDataError(f"{path}: missing columns {missing}; found {list(frame.columns)}")
    known = set(taxonomy.labels)
    problems: list[str] = []
    records: list[Record] = []
    for row_number, row in enumerate(frame.to_dict(orient="records"), start=1):
        text = str(row.get(mapping.text) or "").strip()
        try:
            labels = _labels(row.get(mapping.labels), mapping.label_separator)
            raw_context = row.get(mapping.context) if mapping.context and mapping.context in frame.columns else None
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
