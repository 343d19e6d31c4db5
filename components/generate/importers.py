"""Import labelled data, keeping the good rows: a user's file with a column mapping (`import_file`),
or a public data set in its original format through its adapter (`import_dataset`, `import_public`).

Policy for both: every bad row (missing, null, non-string or NUL text, an unparseable line, a label
the mapping does not know) is reported by file and line in `import_report.json`; the good rows are
kept; nothing is dropped or altered silently. More than `max_bad_fraction` bad rows means the file
is not what the mapping thinks it is, and the import fails with one line naming the first few.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from tiergate.dataset_adapters import (
    DEFAULT_MAX_BAD_FRACTION,
    IMPORT_REPORT,
    Adapter,
    Lookup,
    NotANumber,
    Row,
    load_adapter,
    load_adapters,
)
from tiergate.datasets import DatasetManifest, file_entry, write_manifest
from tiergate.errors import ConfigError, InputDataError
from tiergate.hashing import write_json
from tiergate.records import Context, Kind, LabelState, Record, Source, make_record, record_sort_key, write_jsonl
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)

SHOWN_BAD_ROWS = 5
MAX_ROW_SHAPES = 1000  # distinct one-line row shapes remembered for the open-quote check
MAX_LABEL_VALUES = 50  # a column with no more distinct values than this reads as a label column
PROGRESS_EVERY_S = 5.0

FORMATS = ("csv", "jsonl", "parquet")
EVALUATION_DATASET = "evaluation"  # manifest `dataset` of an evaluation-only set: never trained on


@dataclass(frozen=True)
class ColumnMapping:
    text: str = "text"
    labels: str = "labels"
    context: str | None = "context"
    kind: str | None = None
    label_separator: str = ","
    default_context: str = "general/message"


def _read_rows(path: Path, file_format: str) -> tuple[list[str], list[tuple[str, dict[str, Any]]], list[BadRow]]:
    """(columns, (location, row) pairs, bad rows found while reading). A location is `FILE:LINE` as a
    person finds it (a CSV row's first physical line, a JSONL line; `FILE:row N` in a Parquet file).
    Nothing is cut or converted on the way: a NUL byte or a line that is not a JSON object is a bad row
    naming its line, never a shortened or skipped row."""
    if file_format == "auto":
        suffix = path.suffix.lower().lstrip(".")
        file_format = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    if file_format not in FORMATS:
        raise InputDataError(f"{path}: unknown format {file_format!r}; use one of {', '.join(FORMATS)}")
    if file_format == "jsonl":
        return _read_jsonl(path)
    if file_format == "csv":
        return _read_csv(path)
    try:
        frame = pd.read_parquet(path)
    except (ValueError, OSError) as error:
        raise InputDataError(f"{path}: cannot read as {file_format}: {' '.join(str(error).split())[:300]}") from None
    columns = [str(column) for column in frame.columns]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise InputDataError(f"{path}: duplicate column names {duplicated}; rename them")
    rows = [(f"{path.name}:row {number}", row) for number, row in enumerate(frame.to_dict(orient="records"), start=1)]
    return columns, rows, []


def _read_csv(path: Path) -> tuple[list[str], list[tuple[str, dict[str, Any]]], list[BadRow]]:
    """Rows keyed by the physical line where each starts; a row with a NUL byte, the wrong number of
    fields or a quote left open is a problem naming its line, and the other rows are still read."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            lines = handle.readlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputDataError(f"{path}: cannot read as csv: {' '.join(str(error).split())[:300]}") from None
    columns: list[str] | None = None
    rows: list[tuple[str, dict[str, Any]]] = []
    problems: list[BadRow] = []
    for record in _csv_records(lines):
        if columns is None and record.fields is not None:
            columns = record.fields
            duplicated = sorted({name for name in columns if columns.count(name) > 1})
            if duplicated:
                raise InputDataError(f"{path}: duplicate column names {duplicated} in the header; rename them")
            continue
        location = f"{path.name}:{record.line}"
        if record.fields is None:
            problems.append(BadRow(location, record.problem))
        elif any("\x00" in field for field in record.fields):
            problems.append(BadRow(location, "NUL byte"))
        elif columns is not None and len(record.fields) != len(columns):
            problems.append(BadRow(location, f"{len(record.fields)} fields, the header has {len(columns)}"))
        else:
            rows.append((location, dict(zip(columns or [], record.fields, strict=True))))
    return columns or [], rows, problems


def _read_jsonl(path: Path) -> tuple[list[str], list[tuple[str, dict[str, Any]]], list[BadRow]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputDataError(f"{path}: cannot read as jsonl: {error}") from None
    rows: list[tuple[str, dict[str, Any]]] = []
    problems: list[BadRow] = []
    columns: dict[str, None] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        location = f"{path.name}:{line_number}"
        try:
            value = json.loads(line, object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as error:
            problems.append(BadRow(location, f"not JSON ({' '.join(str(error).split())[:80]})"))
            continue
        if not isinstance(value, dict):
            problems.append(BadRow(location, f"a JSON {type(value).__name__}, not an object"))
            continue
        columns.update(dict.fromkeys(value))
        rows.append((location, value))
    return list(columns), rows, problems


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict; a key given twice is an error (json.loads would keep the last silently)."""
    keys = [key for key, _ in pairs]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise ValueError(f"duplicate keys {duplicated}")
    return dict(pairs)


def cell_text(value: Any) -> str:
    """The text exactly as given: a missing, null or non-string value is an error, never its repr
    ("nan", "True", "['a']" would otherwise become a labelled example)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        raise ValueError("missing text")
    if not isinstance(value, str):
        raise ValueError(f"text is a {type(value).__name__}, not a string")
    if "\x00" in value:
        raise ValueError("text contains a NUL character")
    return value.strip()


def _null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _labels(value: Any, separator: str) -> list[str]:
    """A row's categories. A null (JSON null or NaN, a Parquet None, a missing key) is an error: an
    empty list or an empty string says "negative for every category", a null says nothing."""
    if _null(value):
        raise ValueError("labels is null or missing; write [] or an empty string for a negative")
    if isinstance(value, str):
        return [part.strip() for part in value.split(separator) if part.strip()]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [str(part).strip() for part in value if str(part).strip()]
    raise ValueError(f"labels must be a string or a list, got {type(value).__name__}")


@dataclass(frozen=True)
class _CsvRecord:
    line: int  # the physical line (from 1) where the record starts
    fields: list[str] | None  # None: the record is unreadable, `problem` says why
    problem: str = ""


def _csv_records(
    lines: Sequence[str], delimiter: str = ",", quoting: Literal[0, 3] = csv.QUOTE_MINIMAL, width: int | None = None
) -> Iterator[_CsvRecord]:
    """The file's records (header included) with the physical line each starts on.

    A quote left open swallows the rows after it into one field, silently. So a record that spans
    lines is checked: if a line inside it reads as a whole row by itself (balanced quotes, the
    header's number of fields, each field shaped like that column in a one-line row seen before),
    or the quote is still open at the end of the file, the record is a problem naming the line where
    the quote opened, and reading starts again on the next line, so every following row is still
    read and counted. `width` is the header's field count (the first record's when not given)."""
    shapes = _RowShapes()  # what the one-line rows read so far look like
    position = 0
    while position < len(lines):
        base = position
        reader = csv.reader((lines[index] for index in range(base, len(lines))), delimiter=delimiter, quoting=quoting)
        restart: int | None = None
        start = base
        while restart is None:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield _CsvRecord(start + 1, None, f"the CSV reader fails here ({error})")
                restart = start + 1
                break
            first, start = start, base + reader.line_num
            if not fields:
                continue  # a blank line holds no record
            if width is None:
                width = len(fields)
            elif quoting != csv.QUOTE_NONE and (start - first > 1 or start == len(lines)):
                problem = _open_quote(lines, first, start, delimiter, width, shapes)
                if problem:
                    yield _CsvRecord(first + 1, None, problem)
                    restart = first + 1
                    break
            if start - first == 1 and len(fields) == width:
                shapes.add(fields)
            yield _CsvRecord(first + 1, fields)
        position = restart if restart is not None else len(lines)


def _shape(fields: Sequence[str]) -> tuple[str, ...]:
    """What each field looks like: empty, a number, one token, or text with spaces."""
    return tuple(
        "empty"
        if not field
        else "number"
        if _is_number(field)
        else "text"
        if any(character.isspace() for character in field) or len(field) > 40
        else "token"
        for field in fields
    )


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


class _RowShapes:
    """What a row of this file looks like, learnt from its one-line rows: each field's shape, and the
    values of its label-like columns (few distinct values that repeat: a class, a vote count, a subreddit;
    an id column never repeats). A line inside a quoted field that matches both is a swallowed row, not
    a line of text with a comma."""

    def __init__(self) -> None:
        self.shapes: set[tuple[str, ...]] = set()
        self.values: list[set[str] | None] = []  # per column; None once it has too many values to be a label
        self.rows = 0

    def __bool__(self) -> bool:
        return bool(self.shapes)

    def add(self, fields: Sequence[str]) -> None:
        if len(self.shapes) < MAX_ROW_SHAPES:
            self.shapes.add(_shape(fields))
        if not self.values:
            self.values = [set() for _ in fields]
        self.rows += 1
        for index, value in enumerate(fields):
            seen = self.values[index]
            if seen is not None:
                seen.add(value.strip())
                if len(seen) > MAX_LABEL_VALUES:
                    self.values[index] = None

    def matches(self, fields: Sequence[str]) -> bool:
        if _shape(fields) not in self.shapes:
            return False
        labels = [(seen, value) for seen, value in zip(self.values, fields, strict=False) if seen and 2 * len(seen) <= self.rows]
        return all(value.strip() in seen for seen, value in labels)


def _open_quote(lines: Sequence[str], first: int, end: int, delimiter: str, width: int, shapes: _RowShapes) -> str:
    """Why the record on lines[first:end] is a quote left open, or "" when it reads as one record.

    A well-formed quoted field over several lines (quotes doubled inside, the closing quote before a
    delimiter or the line end) is a record. A quote left open ends at the next quote in the file, which
    opens some later field, so the record is malformed: then a line inside it shaped like a row of its
    own (see `_RowShapes`) shows the rows it swallowed."""
    try:
        list(csv.reader(lines[first:end], delimiter=delimiter, strict=True))
        return ""
    except csv.Error as error:
        if end == len(lines) and "end of data" in str(error):
            return f"a quote opened on line {first + 1} is never closed (end of file at line {end})"
    if width < 2 or not shapes:
        return ""
    for index in range(first + 1, end):
        line = lines[index]
        if line.count('"') % 2 == 0 and line.strip():
            parsed = list(csv.reader([line], delimiter=delimiter))
            if len(parsed) == 1 and len(parsed[0]) == width and shapes.matches(parsed[0]):
                return (
                    f"a quote opened on line {first + 1} is not closed before line {index + 1}, which reads as a row"
                    " of its own (unclosed quote)"
                )
    return ""


@dataclass(frozen=True)
class BadRow:
    location: str  # FILE:LINE as a person finds it in the original file
    problem: str

    def __str__(self) -> str:
        return f"{self.location}: {self.problem}"


def _too_many_bad(what: str, bad: Sequence[BadRow], total: int, max_bad_fraction: float) -> InputDataError | None:
    """The error when more than `max_bad_fraction` of the rows are bad, naming the first few; else None."""
    if not bad or len(bad) <= max_bad_fraction * total:
        return None
    shown = "; ".join(str(row) for row in bad[:SHOWN_BAD_ROWS]) + (
        f"; ... {len(bad) - SHOWN_BAD_ROWS} more" if len(bad) > SHOWN_BAD_ROWS else ""
    )
    return InputDataError(f"{what}: {len(bad)} of {total} rows bad, above the allowed fraction {max_bad_fraction:g}: {shown}")


def import_file(
    taxonomy: Taxonomy,
    path: Path,
    out_dir: Path,
    mapping: ColumnMapping,
    file_format: str = "auto",
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
) -> DatasetManifest:
    """Validate every row, keep the good ones, report the bad ones by FILE:LINE (import_report.json)."""
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
    bad = list(problems)
    records = [
        record
        for record in (_mapped_record(taxonomy, path, mapping, columns, location, row, bad) for location, row in rows)
        if record
    ]
    out_dir = Path(out_dir)
    report = {"source": path.name, "rows": len(records) + len(bad), "kept": len(records), "bad": len(bad)}
    write_json(out_dir / IMPORT_REPORT, {**report, "bad_rows": [row.__dict__ for row in bad]})
    error = _too_many_bad(str(path), bad, len(records) + len(bad), max_bad_fraction)
    if error is not None or not records:
        raise error or InputDataError(f"{path}: {len(bad)} invalid row(s), no good rows: {'; '.join(map(str, bad[:5]))}")
    records.sort(key=record_sort_key)
    records_path = out_dir / "records.jsonl"
    write_jsonl(records_path, records)
    manifest = DatasetManifest(
        dataset="imported",
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.labels_sha256,
        files={"records.jsonl": file_entry(records_path, len(records))},
        counts={"records": len(records), "source": path.name, "bad_rows": len(bad)},
        config={"mapping": mapping.__dict__, "format": file_format, "max_bad_fraction": max_bad_fraction},
        notes=[f"{len(bad)} bad row(s) left out, listed in {IMPORT_REPORT}"] if bad else [],
    )
    write_manifest(out_dir, manifest)
    return manifest


def _mapped_record(
    taxonomy: Taxonomy,
    path: Path,
    mapping: ColumnMapping,
    columns: list[str],
    location: str,
    row: dict[str, Any],
    bad: list[BadRow],
) -> Record | None:
    """One user row as a record, or None with the problem appended to `bad`."""
    try:
        text = cell_text(row.get(mapping.text))
        given_kind = Kind(str(row.get(mapping.kind))) if mapping.kind else None
        raw_labels = row.get(mapping.labels)
        negative = given_kind is not None and given_kind is not Kind.POSITIVE
        labels = [] if negative and _null(raw_labels) else _labels(raw_labels, mapping.label_separator)
        raw_context = row.get(mapping.context) if mapping.context and mapping.context in columns else None
        context = Context.parse(
            str(raw_context or mapping.default_context), taxonomy.contexts.audiences, taxonomy.contexts.surfaces
        )
        kind = given_kind or (Kind.POSITIVE if labels else Kind.INNOCUOUS)
    except (ValueError, InputDataError) as error:
        bad.append(BadRow(location, str(error)))
        return None
    problem = _row_problem(taxonomy, text, labels, kind)
    if problem:
        bad.append(BadRow(location, problem))
        return None
    source = Source(
        generator="import",
        model=path.name,
        prompt_id=location,
        category=labels[0] if labels else None,
        kind=kind,
    )
    return make_record(text, context, labels, source)


def _row_problem(taxonomy: Taxonomy, text: str, labels: list[str], kind: Kind) -> str | None:
    unknown = sorted(set(labels) - set(taxonomy.labels))
    if not text:
        return "empty text"
    if unknown:
        return f"unknown labels {unknown}"
    if kind is Kind.POSITIVE and not labels:
        return "kind positive but no labels"
    return None


# --- public data sets: original files read through an adapter ---------------------------------------------


def _open_text(path: Path, encoding: str) -> Any:
    """Undecodable bytes survive as surrogates, so one bad byte is one bad row, not an unreadable file."""
    return path.open(encoding=encoding, errors="surrogateescape", newline="")


def _csv_rows(adapter: Adapter, path: Path, relative: str) -> Iterator[Row | BadRow]:
    """CSV/TSV rows, each located at the physical line where it starts (quoted fields may span lines;
    a quote left open is a bad row, see `_csv_records`)."""
    delimiter = "\t" if adapter.format == "tsv" else ","
    header: list[str] | None = None if adapter.header else list(adapter.columns)
    with _open_text(path, adapter.encoding) as handle:
        lines = handle.readlines()
    quoting: Literal[0, 3] = csv.QUOTE_MINIMAL if adapter.quoting else csv.QUOTE_NONE
    for record in _csv_records(lines, delimiter, quoting, None if header is None else len(header)):
        if record.fields is None:
            yield BadRow(f"{relative}:{record.line}", f"unparseable row: {record.problem}")
            continue
        fields, line = record.fields, record.line
        if header is None:
            header = fields
            if adapter.columns and header != list(adapter.columns):
                raise InputDataError(
                    f"{adapter.name}: {relative}:{line}: header {_shown(header)} is not the expected {adapter.columns}"
                    " (a file without a header line needs header: false)"
                )
            continue
        if len(fields) != len(header):
            yield BadRow(f"{relative}:{line}", f"unparseable row: {len(fields)} fields, the header has {len(header)}")
            continue
        pairs = tuple(zip(header, fields, strict=True))
        values: dict[str, Any] = {}
        for name, value in pairs:
            values.setdefault(name, value)  # a duplicated header name: the first column; `columns` sums them all
        yield Row(values, relative, f"{relative}:{line}", pairs)


def _jsonl_rows(adapter: Adapter, path: Path, relative: str) -> Iterator[Row | BadRow]:
    with _open_text(path, adapter.encoding) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = f"{relative}:{line_number}"
            try:
                value = json.loads(line)
            except (ValueError, RecursionError) as error:
                yield BadRow(location, f"unparseable line: not JSON ({' '.join(str(error).split())[:80]})")
                continue
            yield (
                Row(value, relative, location)
                if isinstance(value, dict)
                else BadRow(location, f"a JSON {type(value).__name__}, not an object")
            )


def _json_array_rows(adapter: Adapter, path: Path, relative: str) -> Iterator[Row | BadRow]:
    """Items of a JSON array, each at the line where it starts, `#k` = k-th item starting on that line."""
    with _open_text(path, adapter.encoding) as handle:
        text = handle.read()
    decoder = json.JSONDecoder()
    position, line, last, on_line = _skip_space(text, 0), 1, 0, 0
    if text[position : position + 1] != "[":
        raise InputDataError(f"{adapter.name}: {relative}:1: not a JSON array; the file cannot be read")
    position = _skip_space(text, position + 1)
    while position < len(text) and text[position] != "]":
        newlines = text.count("\n", last, position)
        line, last, on_line = line + newlines, position, (on_line + 1 if newlines == 0 else 1)
        location = f"{relative}:{line}#{on_line}"
        try:
            value, end = decoder.raw_decode(text, position)
        except (ValueError, RecursionError) as error:
            raise InputDataError(
                f"{adapter.name}: {location}: the JSON array breaks here ({' '.join(str(error).split())[:80]}); every item"
                " from here on is unreadable, so the file is cut off or corrupt: download it again"
            ) from None
        yield (
            Row(value, relative, location)
            if isinstance(value, dict)
            else BadRow(location, f"a JSON {type(value).__name__}, not an object")
        )
        position = _skip_space(text, end)
        if text[position : position + 1] == ",":
            position = _skip_space(text, position + 1)
        elif text[position : position + 1] != "]":
            where = f"{relative}:{line + text.count(chr(10), last, position)}"
            raise InputDataError(
                f"{adapter.name}: {where}: the JSON array breaks here (expected , or ] after an item); every item from"
                " here on is unreadable, so the file is cut off or corrupt: download it again"
            )
    if position >= len(text):
        raise InputDataError(
            f"{adapter.name}: {relative}:{text.count(chr(10)) + 1}: the file ends before the JSON array is closed;"
            " it is cut off: download it again"
        )


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _line_rows(adapter: Adapter, path: Path, relative: str) -> Iterator[Row | BadRow]:
    """One row per line; with `items`, one row per statement of the list a line holds (`#k`). An item that
    is only the prefix (a prompt's open slot, e.g. the trailing `-`) is the list's framing, not a row."""
    with _open_text(path, adapter.encoding) as handle:
        for line_number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if adapter.items is None:
                yield Row({adapter.text: line}, relative, f"{relative}:{line_number}")
                continue
            prefix = adapter.items.prefix
            statements = [part.strip() for part in line.split(adapter.items.separator)]
            statements = [
                part.removeprefix(prefix.strip()).strip() if part.startswith(prefix.strip()) else part for part in statements
            ]
            for index, statement in enumerate((part for part in statements if part), start=1):
                yield Row({adapter.text: statement}, relative, f"{relative}:{line_number}#{index}")


READERS = {"csv": _csv_rows, "tsv": _csv_rows, "jsonl": _jsonl_rows, "json": _json_array_rows, "lines": _line_rows}


class LookupLost(ValueError):
    """A row of a lookup file that belongs to this row is unreadable: its joined values are incomplete."""


class JoinedLookups:
    """An adapter's lookups, loaded once per set: key -> values, step by step. A lookup file is read like
    the set's CSV/TSV files. Its bad rows are counted apart (they are not rows of the set's own files),
    and a row whose join meets the key of a lost lookup row is itself a bad row: a lost annotation would
    otherwise silently change the vote. A lost row whose key cannot be read is listed as affecting
    unknown rows."""

    def __init__(self, adapter: Adapter, source_dir: Path, found: DatasetImport):
        self.adapter = adapter
        self.tables: dict[tuple[str, str, str], dict[str, list[str]]] = {}
        self.lost: dict[tuple[str, str, str], dict[str, str]] = {}  # key -> where its lost row was
        for lookup in adapter.lookups.values():
            for step in lookup.steps:
                if (step.file, step.match, step.take) in self.tables:
                    continue
                path = source_dir / step.file
                if not path.is_file():
                    raise InputDataError(f"{adapter.name}: no file {step.file!r} in {source_dir} (download: {adapter.source})")
                inside(path, source_dir, adapter.name)
                table: dict[str, list[str]] = defaultdict(list)
                lost: dict[str, str] = {}
                lines: list[str] = []  # the file's physical lines, read again only when a row is lost
                counts = found.lookup_files.setdefault(step.file, Counter(rows=0, bad=0))
                for row in _csv_rows(adapter, path, step.file):
                    counts["rows"] += 1
                    if isinstance(row, BadRow):
                        counts["bad"] += 1
                        lines = lines or _read_lines(adapter, path)
                        key = _lost_key(adapter, lines, row, step.match)
                        if key:
                            lost.setdefault(key, row.location)
                        if row not in found.lookup_bad:
                            affects = f"rows whose {step.match} is {key!r}" if key else "unknown rows (its key is unreadable)"
                            found.lookup_bad.append(BadRow(row.location, f"{row.problem}; affects {affects}"))
                        continue
                    table[_key(row.values.get(step.match))].append(_key(row.values.get(step.take)))
                self.tables[(step.file, step.match, step.take)] = table
                self.lost[(step.file, step.match, step.take)] = lost

    def values(self, lookup: Lookup, key: Any) -> list[str]:
        current = [_key(key)] if key is not None else []
        for step in lookup.steps:
            table = self.tables[(step.file, step.match, step.take)]
            lost = self.lost[(step.file, step.match, step.take)]
            found: list[str] = []
            for item in current:
                if item in lost:
                    raise LookupLost(
                        f"its {step.match} {item!r} has an unreadable row at {lost[item]}, so its labels are incomplete"
                    )
                taken = table.get(item, [])
                found += list(dict.fromkeys(taken)) if step.distinct else taken
            current = found
        return current

    def extend(self, row: Row) -> Row:
        if not self.adapter.lookups:
            return row
        extra = {name: self.values(lookup, row.values.get(lookup.key)) for name, lookup in self.adapter.lookups.items()}
        return Row({**row.values, **extra}, row.file, row.location, row.pairs)


def _read_lines(adapter: Adapter, path: Path) -> list[str]:
    with _open_text(path, adapter.encoding) as handle:
        return handle.readlines()


def _lost_key(adapter: Adapter, lines: list[str], bad: BadRow, column: str) -> str:
    """The `column` value of a lookup file's unreadable row, read from its first physical line alone, or ""."""
    number = int(bad.location.rsplit(":", 1)[1])
    delimiter = "\t" if adapter.format == "tsv" else ","
    header = next(csv.reader(lines[:1], delimiter=delimiter), []) if adapter.header else list(adapter.columns)
    fields = next(csv.reader(lines[number - 1 : number], delimiter=delimiter), [])
    if column not in header or header.index(column) >= len(fields):
        return ""
    return _key(fields[header.index(column)])


def _key(value: Any) -> str:
    """A join key as text: 278, "278" and "278.0" (a float-typed id column) are the same key."""
    text = "" if value is None else str(value).strip()
    return text[:-2] if text.endswith(".0") and text[:-2].lstrip("-").isdigit() else text


def inside(path: Path, root: Path, what: str) -> None:
    """Refuse a file or folder that resolves outside `root` (a symlink out of the source folder would
    import, and publish in the report, whatever it points at)."""
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise InputDataError(f"{what}: {path} resolves to {resolved}, outside the source folder {root}; refusing to follow it")


def adapter_files(adapter: Adapter, source_dir: Path) -> list[Path]:
    """The set's files, every glob matching at least one (a partial download is an error, not a smaller set)."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise InputDataError(f"{adapter.name}: source folder not found: {source_dir}")
    files: list[Path] = []
    for pattern in adapter.files:
        matched = sorted(path for path in source_dir.glob(pattern) if path.is_file())
        for path in matched:
            inside(path, source_dir, adapter.name)
        if not matched:
            raise InputDataError(f"{adapter.name}: no file matches {pattern!r} in {source_dir} (download: {adapter.source})")
        files += [path for path in matched if path not in files]
    return files


@dataclass
class DatasetImport:
    """What one set's import found: rows per file, bad rows, skipped rows, label counts."""

    name: str
    files: dict[str, Counter[str]] = field(default_factory=dict)
    bad: list[BadRow] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    categories: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    kinds: Counter[str] = field(default_factory=Counter)
    lookup_files: dict[str, Counter[str]] = field(default_factory=dict)  # files joined to the rows (rows, bad)
    lookup_bad: list[BadRow] = field(default_factory=list)  # unreadable rows of those files, apart from `bad`

    @property
    def kept(self) -> int:
        return sum(counts["kept"] for counts in self.files.values())

    @property
    def rows(self) -> int:
        return sum(counts["rows"] for counts in self.files.values())

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "kept": self.kept,
            "bad": len(self.bad),
            "skipped": sum(self.skipped.values()),
            "lookup_bad": len(self.lookup_bad),
            "skipped_by_reason": dict(self.skipped),
            "by_file": {name: dict(counts) for name, counts in self.files.items()},
            "lookup_files": {name: dict(counts) for name, counts in self.lookup_files.items()},
            "by_kind": dict(self.kinds),
            "by_category": {
                name: {state.value: counts[state.value] for state in LabelState}
                for name, counts in sorted(self.categories.items())
            },
        }


def _dataset_records(taxonomy: Taxonomy, adapter: Adapter, source_dir: Path, found: DatasetImport) -> Iterator[Record]:
    """Every good row of the set as a record; bad and skipped rows counted in `found`."""
    source_dir = Path(source_dir)
    files = adapter_files(adapter, source_dir)
    joined = JoinedLookups(adapter, source_dir, found)
    context = Context.parse(adapter.context, taxonomy.contexts.audiences, taxonomy.contexts.surfaces)
    categories = taxonomy.labels
    fields = adapter.referenced_fields()
    for path in files:
        relative = path.relative_to(source_dir).as_posix()
        counts = found.files.setdefault(relative, Counter(rows=0, kept=0, bad=0, skipped=0))
        last_log = time.monotonic()
        for item in READERS[adapter.format](adapter, path, relative):
            counts["rows"] += 1
            if time.monotonic() - last_log > PROGRESS_EVERY_S:
                last_log = time.monotonic()
                log.info("%s %s: %d rows read", adapter.name, relative, counts["rows"])
            record = row_record(adapter, joined, item, context, categories, fields, found)
            if record is None:
                continue
            counts["kept"] += 1
            found.kinds[record.source.kind.value] += 1
            for category in categories:
                found.categories[category][record.label_state(category).value] += 1
            yield record
        counts["bad"] = sum(1 for row in found.bad if row.location.startswith(f"{relative}:"))
        counts["skipped"] = counts["rows"] - counts["kept"] - counts["bad"]
        log.info(
            "%s %s: %d rows, %d kept, %d bad, %d skipped",
            adapter.name,
            relative,
            counts["rows"],
            counts["kept"],
            counts["bad"],
            counts["skipped"],
        )


def row_record(
    adapter: Adapter,
    joined: JoinedLookups,
    item: Row | BadRow,
    context: Context,
    categories: list[str],
    fields: list[str],
    found: DatasetImport,
) -> Record | None:
    """One row through the adapter: a record, or None with the row counted as bad or skipped in `found`."""
    if isinstance(item, BadRow):
        found.bad.append(item)
        return None
    try:
        row = joined.extend(item)
    except LookupLost as error:
        found.bad.append(BadRow(item.location, str(error)))
        return None
    try:
        text = cell_text(row.values.get(adapter.text))
        text.encode("utf-8")
    except UnicodeEncodeError:
        found.bad.append(BadRow(row.location, f"text is not valid {adapter.encoding}"))
        return None
    except ValueError as error:
        found.bad.append(BadRow(row.location, f"{error} (field {adapter.text!r})"))
        return None
    if not text:
        found.bad.append(BadRow(row.location, f"empty text (field {adapter.text!r})"))
        return None
    try:
        decision = adapter.decide(row, categories)
    except NotANumber as error:
        found.bad.append(BadRow(row.location, f"{error}, and a rule reads it as one"))
        return None
    if decision.status == "unmatched":
        shown = ", ".join(f"{name}={_shown(row.values[name])}" for name in fields if name in row.values)
        found.bad.append(BadRow(row.location, f"label value the adapter does not know: {shown or 'no label fields'}"))
        return None
    if decision.status == "skipped":
        found.skipped[decision.reason] += 1
        return None
    source = Source(
        generator="public",
        model=adapter.name,
        prompt_id=row.location,
        category=decision.labels[0] if decision.labels else None,
        kind=decision.kind,
    )
    return make_record(text, context, decision.labels, source, unknown=decision.unknown)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def import_dataset(
    taxonomy: Taxonomy,
    adapter: Adapter,
    source_dir: Path,
    out_dir: Path,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
) -> DatasetManifest:
    """Import one public set from its original files into a dataset folder (records, manifest, report)."""
    return _write_public(taxonomy, [(adapter, Path(source_dir))], Path(out_dir), max_bad_fraction, notes=[])


def import_public(
    taxonomy: Taxonomy,
    root_dir: Path,
    out_dir: Path,
    datasets: Sequence[str] | None = None,
    role: str = "train",
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
) -> DatasetManifest:
    """Import every adapter of `role` (or the named `datasets`) whose folder exists under `root_dir`,
    into one dataset. Absent sets are listed in the manifest's notes; none found is an error."""
    root_dir = Path(root_dir)
    if not root_dir.is_dir():
        raise InputDataError(f"public data folder not found: {root_dir}")
    if datasets is None:
        adapters = load_adapters(taxonomy, role=role)
    else:
        adapters = [load_adapter(name, taxonomy) for name in datasets]
        wrong = [adapter.name for adapter in adapters if adapter.role != role]
        if wrong:
            raise ConfigError(f"datasets {wrong} are not {role!r} sets (evaluation sets are never trained on)")
    present = [(adapter, root_dir / adapter.name) for adapter in adapters if (root_dir / adapter.name).is_dir()]
    for adapter, folder in present:
        inside(folder, root_dir, adapter.name)
    absent = [adapter.name for adapter in adapters if not (root_dir / adapter.name).is_dir()]
    if not present:
        raise InputDataError(
            f"no public data set found under {root_dir}; expected folders: {', '.join(a.name for a in adapters)}"
        )
    notes = [f"not found under {root_dir}, not imported: {', '.join(absent)}"] if absent else []
    return _write_public(taxonomy, present, Path(out_dir), max_bad_fraction, notes)


def _write_public(
    taxonomy: Taxonomy,
    sources: list[tuple[Adapter, Path]],
    out_dir: Path,
    max_bad_fraction: float,
    notes: list[str],
) -> DatasetManifest:
    """Stream every set's good records into records.jsonl (written atomically), then the report and the
    manifest. A set above `max_bad_fraction` fails the import: the report is still written, the records not."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = out_dir / "records.jsonl"
    partial = out_dir / "records.jsonl.partial"
    found: list[DatasetImport] = []
    count = 0
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for adapter, source_dir in sources:
                result = DatasetImport(adapter.name)
                found.append(result)
                for record in _dataset_records(taxonomy, adapter, source_dir, result):
                    handle.write(record.to_json() + "\n")
                    count += 1
        _write_report(out_dir, found, max_bad_fraction)
        for result in found:
            error = _too_many_bad(result.name, result.bad, result.rows, max_bad_fraction)
            for name, counts in result.lookup_files.items():
                lost = [row for row in result.lookup_bad if row.location.startswith(f"{name}:")]
                error = error or _too_many_bad(f"{result.name} {name}", lost, counts["rows"], max_bad_fraction)
            if error is not None:
                raise error
            if result.kept == 0:
                raise InputDataError(f"{result.name}: no good rows among {result.rows}")
        partial.replace(records_path)
    finally:
        partial.unlink(missing_ok=True)
    evaluation = any(adapter.role == "evaluation" for adapter, _ in sources)
    manifest = DatasetManifest(
        dataset=EVALUATION_DATASET if evaluation else "imported",  # merge refuses an evaluation set
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.labels_sha256,
        files={"records.jsonl": file_entry(records_path, count)},
        counts={
            "records": count,
            "bad_rows": sum(len(result.bad) for result in found),
            "by_dataset": {result.name: result.summary() for result in found},
            "by_category": _category_totals(taxonomy, found),
        },
        config={
            "max_bad_fraction": max_bad_fraction,
            "datasets": {
                adapter.name: {
                    "source_dir": str(source_dir),
                    "role": adapter.role,
                    "licence": adapter.licence,
                    "citation": adapter.citation,
                    "source": adapter.source,
                    "url": adapter.url,
                    "covers": adapter.covers,
                    "context": adapter.context,
                }
                for adapter, source_dir in sources
            },
        },
        notes=notes
        + [f"{result.name}: {len(result.bad)} bad row(s) left out, listed in {IMPORT_REPORT}" for result in found if result.bad]
        + [
            f"{result.name}: {len(result.lookup_bad)} unreadable row(s) in its lookup files, listed in {IMPORT_REPORT}"
            for result in found
            if result.lookup_bad
        ],
    )
    write_manifest(out_dir, manifest)
    return manifest


def _category_totals(taxonomy: Taxonomy, found: list[DatasetImport]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for category in taxonomy.labels:
        merged: Counter[str] = Counter(positive=0, negative=0, unknown=0)
        for result in found:
            merged.update(result.categories.get(category, Counter()))
        totals[category] = dict(merged)
    return totals


def _write_report(out_dir: Path, found: list[DatasetImport], max_bad_fraction: float) -> None:
    write_json(
        out_dir / IMPORT_REPORT,
        {
            "max_bad_fraction": max_bad_fraction,
            "datasets": {
                result.name: {
                    **result.summary(),
                    "bad_rows": [row.__dict__ for row in result.bad],
                    "lookup_bad_rows": [row.__dict__ for row in result.lookup_bad],
                }
                for result in found
            },
        },
    )
