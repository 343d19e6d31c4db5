"""The record schema: one labelled text, its context and where it came from.

Labels travel by *name*; a record never stores a bare vector. The id is a hash of
the normalised text, so the same sentence always has the same id and the same split.

Labels are partial: for each category a record is positive (`labels`), unknown
(`unknown`) or negative (every other category). Generated data knows every category;
a public set knows only its own (a tweet labelled "hate" says nothing about self-harm),
so its other categories are unknown and never trained or scored as negatives.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tiergate.errors import InputDataError
from tiergate.hashing import canonical_json, sha256_text

_WHITESPACE = re.compile(r"\s+")


class Kind(StrEnum):
    """Why a record exists; drives curriculum phases and screening."""

    POSITIVE = "positive"
    CONTEXT = "context"  # a positive's text in an audience where its category is allowed: same words, no label
    HARD_NEGATIVE = "hard_negative"
    INNOCUOUS = "innocuous"
    PERTURBATION = "perturbation"


class LabelState(StrEnum):
    """What a record says about one category."""

    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNKNOWN = "unknown"


QUOTE_CHARS = 40


def quote_input(value: str, limit: int = QUOTE_CHARS) -> str:
    """`repr` of at most `limit` characters of a value someone sent: an error never echoes a whole request back."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


class Context(BaseModel):
    """Where a text appears: audience (general/adult) × surface (message/bio/listing/review)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    audience: str
    surface: str

    @classmethod
    def parse(cls, value: str, audiences: Iterable[str], surfaces: Iterable[str]) -> Context:
        """Parse `adult/message` (or `adult:message`) and check both parts are known."""
        audiences, surfaces = list(audiences), list(surfaces)
        parts = re.split(r"[/:]", value.strip().lower())
        if len(parts) != 2:
            raise InputDataError(f"context {quote_input(value)} must look like AUDIENCE/SURFACE, e.g. general/message")
        audience, surface = parts
        if audience not in audiences:
            raise InputDataError(
                f"context {quote_input(value)}: unknown audience {quote_input(audience)}; known: {', '.join(audiences)}"
            )
        if surface not in surfaces:
            raise InputDataError(
                f"context {quote_input(value)}: unknown surface {quote_input(surface)}; known: {', '.join(surfaces)}"
            )
        return cls(audience=audience, surface=surface)

    def __str__(self) -> str:
        return f"{self.audience}/{self.surface}"


class Source(BaseModel):
    """Provenance: which generator wrote a record, from which prompt, for which category."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generator: str
    model: str
    prompt_id: str
    category: str | None
    kind: Kind
    secondary: str | None = None
    origin_id: str | None = None  # a derived record (perturbation) follows its origin's split


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    text: str = Field(min_length=1)
    context: Context
    labels: tuple[str, ...]
    source: Source
    unknown: tuple[str, ...] = ()  # categories this record's source did not label: neither positive nor negative

    @field_validator("labels", "unknown")
    @classmethod
    def _sorted_unique(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(labels)))

    @model_validator(mode="after")
    def _positive_or_unknown(self) -> Record:
        both = set(self.labels) & set(self.unknown)
        if both:
            raise ValueError(f"categories both positive and unknown: {sorted(both)}")
        return self

    def label_state(self, category: str) -> LabelState:
        """positive / negative / unknown for one category."""
        if category in self.labels:
            return LabelState.POSITIVE
        return LabelState.UNKNOWN if category in self.unknown else LabelState.NEGATIVE

    @property
    def fully_labelled(self) -> bool:
        return not self.unknown

    def to_json(self) -> str:
        """Canonical JSON; `unknown` only when some category is unknown, so a fully labelled record's
        line (and every dataset digest built from such lines) is what it was before partial labels."""
        data = self.model_dump(mode="json")
        if not self.unknown:
            del data["unknown"]
        return canonical_json(data)


def normalise_text(text: str) -> str:
    """NFKC, casefold, collapse whitespace: the identity of a text for ids, dedupe and splits."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_id(text: str) -> str:
    return sha256_text(normalise_text(text))[:20]


def make_record(text: str, context: Context, labels: Iterable[str], source: Source, unknown: Iterable[str] = ()) -> Record:
    clean = _WHITESPACE.sub(" ", text).strip()
    return Record(id=text_id(clean), text=clean, context=context, labels=tuple(labels), source=source, unknown=tuple(unknown))


def source_name(record: Record) -> str:
    """The data source a record is reported under: `public:<set>` for a public set, else its generator."""
    return f"{record.source.generator}:{record.source.model}" if record.source.generator == "public" else record.source.generator


def split_key(record: Record) -> str:
    """The id that decides a record's split: its origin's, for derived records."""
    return record.source.origin_id or record.id


def record_sort_key(record: Record) -> tuple[str, str, str, str]:
    return (record.id, str(record.context), record.source.kind.value, record.source.prompt_id)


def write_jsonl(path: Path, records: Iterable[Record]) -> int:
    """Write records one per line (canonical JSON), atomically; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_json() + "\n")
            count += 1
    tmp.replace(path)
    return count


def iter_jsonl(path: Path) -> Iterator[Record]:
    with Path(path).open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield Record.model_validate(json.loads(line))
            except json.JSONDecodeError as error:
                raise InputDataError(f"{path}:{line_number}: invalid record: not JSON ({error.msg})") from None
            except ValidationError as error:
                raise InputDataError(f"{path}:{line_number}: invalid record: {validation_summary(error)}") from None


def validation_summary(error: ValidationError) -> str:
    """The first problem of a validation error in one line, without echoing the record's text back."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "record"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def read_jsonl(path: Path) -> list[Record]:
    return list(iter_jsonl(path))
