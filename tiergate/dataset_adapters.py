"""Public data set adapters: how one published set's rows become partially labelled records.

An adapter is configuration (`config/datasets/<name>.yaml`), not code: which files of the set
to read and in which format, which field holds the text, and a small declarative rule language
from the set's own labels to taxonomy categories. Every mapping decision carries a one-line
`reason`, so a reviewer can check it against the category's definition.

Rule semantics, per row:
- every rule whose `when` conditions all hold *matches*;
- the row's positives are the union of the matching rules' `labels`;
- its unknown categories are every category outside `covers`, plus the matching rules' `unknown`;
- every other covered category is a known negative;
- no positives and a matching `skip` rule: the row is left out, and counted by that rule's reason;
- no rule matches and no `otherwise`: the row carries a label value the adapter does not know,
  a bad row reported by file and line, never a guess.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from tiergate.errors import ConfigError
from tiergate.paths import config_path
from tiergate.records import Context, Kind
from tiergate.strict import StrictModel, format_validation_error
from tiergate.taxonomy import Taxonomy, load_taxonomy
from tiergate.yaml_io import load_yaml

ADAPTER_NAME = re.compile(r"^[a-z0-9_]+$")
MAX_ADAPTER_NAME = 64  # a name becomes a file name; a longer one is a typo or an attack, not a set
IMPORT_REPORT = "import_report.json"  # an import's bad rows (file:line) and counts, beside its records
DEFAULT_MAX_BAD_FRACTION = 0.05  # more bad rows than this: the file is not what its mapping says

Scalar = str | int | float | bool


class Condition(StrictModel):
    """One test on a row. The subject is a `field` (a dotted path; `a[].b` collects `b` from every
    item of list `a`), the sum of all `columns` whose header matches a glob (duplicate header
    names included), or the row's `file` (relative path, glob). A list-valued subject matches
    `equals` / `in` when any item does; `count` turns it into the number of items equal to the
    given value(s), and a list without `count` is its length, for `min` / `max`."""

    field: str | None = None
    columns: str | None = None
    file: str | list[str] | None = None  # glob(s): the row's file matches any
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    count: Scalar | list[Scalar] | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_subject_and_a_test(self) -> Condition:
        subjects = [name for name in ("field", "columns", "file") if getattr(self, name) is not None]
        if len(subjects) != 1:
            raise ValueError(f"a condition names exactly one of field, columns, file (got {subjects or 'none'})")
        tests = [name for name in ("equals", "in_", "not_in", "min", "max") if getattr(self, name) is not None]
        if self.file is not None and tests:
            raise ValueError("a file condition is its glob alone")
        if self.file is None and not tests:
            raise ValueError("a condition needs a test: equals, in, not_in, min or max")
        if self.columns is not None and (self.equals is not None or self.in_ is not None or self.not_in is not None):
            raise ValueError("columns sums numbers: test it with min / max")
        if self.count is not None and (self.min is None and self.max is None):
            raise ValueError("count is tested with min / max")
        return self

    def holds(self, row: Row) -> bool:
        if self.file is not None:
            globs = self.file if isinstance(self.file, list) else [self.file]
            return any(fnmatch.fnmatchcase(row.file, glob) for glob in globs)
        if self.columns is not None:
            return self._in_range(_column_sum(row, self.columns))
        value = field_value(row.values, self.field or "")
        if self.count is not None:
            wanted = {_canonical(item) for item in (self.count if isinstance(self.count, list) else [self.count])}
            items = value if isinstance(value, list) else [value]
            return self._in_range(float(sum(_canonical(item) in wanted for item in items)))
        if self.min is not None or self.max is not None:
            return self._in_range(float(len(value)) if isinstance(value, list) else _measured(value, self.field or ""))
        items = value if isinstance(value, list) else [value]
        if value is None or items == []:
            return False
        texts = {_canonical(item) for item in items}
        if self.equals is not None:
            return _canonical(self.equals) in texts
        if self.in_ is not None:
            return bool(texts & {_canonical(item) for item in self.in_})
        assert self.not_in is not None
        return not texts & {_canonical(item) for item in self.not_in}

    def _in_range(self, number: float | None) -> bool:
        if number is None:
            return False
        return (self.min is None or number >= self.min) and (self.max is None or number <= self.max)


class Rule(StrictModel):
    """When every condition holds: these positives (and these extra unknowns), or skip the row."""

    when: list[Condition] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)
    kind: Kind | None = None
    skip: bool = False
    reason: str = Field(min_length=10)

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.skip and (self.labels or self.unknown or self.kind):
            raise ValueError("a skip rule gives no labels, unknowns or kind")
        if self.labels and self.kind not in (None, Kind.POSITIVE):
            raise ValueError(f"a rule with labels makes positives, not {self.kind}")
        if not self.labels and self.kind is Kind.POSITIVE:
            raise ValueError("kind positive needs labels")
        if set(self.labels) & set(self.unknown):
            raise ValueError(f"categories both positive and unknown: {sorted(set(self.labels) & set(self.unknown))}")
        return self


class JoinStep(StrictModel):
    """Rows of `file` whose `match` column equals the current key; their `take` column is the next key."""

    file: str
    match: str
    take: str
    distinct: bool = False  # one value per current key (e.g. one vote per annotator, however many spans)

    @field_validator("file")
    @classmethod
    def _inside_the_set(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError(f"{value!r} must be a relative path inside the set's folder")
        return value


class Lookup(StrictModel):
    """A derived, list-valued field: the row's `key` field followed through other files of the set."""

    key: str
    steps: list[JoinStep] = Field(min_length=1)


class ListItems(StrictModel):
    """A line whose text is a list of statements, e.g. `- one\\n- two\\n-` with a literal backslash-n."""

    separator: str = Field(min_length=1)
    prefix: str = ""


class Adapter(StrictModel):
    name: str
    title: str
    role: Literal["train", "evaluation"]
    licence: str
    citation: str
    source: str  # where a user downloads it: repository, commit and path
    url: str
    files: list[str] = Field(min_length=1)
    format: Literal["csv", "tsv", "jsonl", "json", "lines"]
    header: bool = True
    columns: list[str] = Field(default_factory=list)  # a headerless file's names; with a header, the header expected
    quoting: bool = True  # tsv/csv quote characters; off for files whose texts start with a quote
    encoding: str = "utf-8-sig"
    items: ListItems | None = None
    text: str
    context: str = "general/message"
    covers: list[str]
    negative_kind: Kind = Kind.INNOCUOUS
    lookups: dict[str, Lookup] = Field(default_factory=dict)
    rules: list[Rule] = Field(min_length=1)
    otherwise: Rule | None = None  # applies when no rule matches; without it such a row is bad
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> Adapter:
        if not self.header and not self.columns:
            raise ValueError("a file without a header needs `columns`")
        if self.items is not None and self.format != "lines":
            raise ValueError("items applies to the lines format")
        if self.otherwise is not None and self.otherwise.when:
            raise ValueError("otherwise has no conditions")
        for pattern in self.files:
            if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
                raise ValueError(f"files: {pattern!r} must be a relative glob inside the set's folder")
        return self

    @property
    def all_rules(self) -> list[Rule]:
        return self.rules + ([self.otherwise] if self.otherwise else [])

    @property
    def positive_categories(self) -> list[str]:
        return sorted({label for rule in self.all_rules for label in rule.labels})

    def check_against(self, taxonomy: Taxonomy) -> None:
        """Every category named exists, positives are covered, and the context parses."""
        known = set(taxonomy.labels)
        named = {"covers": set(self.covers)}
        for index, rule in enumerate(self.all_rules):
            named[f"rules[{index}]"] = set(rule.labels) | set(rule.unknown)
            uncovered = set(rule.labels) - set(self.covers)
            if uncovered:
                raise ConfigError(f"dataset adapter {self.name}: rules[{index}] labels {sorted(uncovered)} not in covers")
        for where, names in named.items():
            unknown = sorted(names - known)
            if unknown:
                raise ConfigError(f"dataset adapter {self.name}: {where}: unknown categories {unknown}")
        Context.parse(self.context, taxonomy.contexts.audiences, taxonomy.contexts.surfaces)

    def decide(self, row: Row, categories: Sequence[str]) -> Decision:
        """Apply the rules to one row (see the module docstring)."""
        matched = [rule for rule in self.rules if all(condition.holds(row) for condition in rule.when)]
        if not matched and self.otherwise is not None:
            matched = [self.otherwise]
        if not matched:
            return Decision(status="unmatched")
        labels = sorted({label for rule in matched for label in rule.labels})
        if not labels and any(rule.skip for rule in matched):
            return Decision(status="skipped", reason=next(rule.reason for rule in matched if rule.skip))
        covered = set(self.covers)
        unknown = {name for name in categories if name not in covered}
        unknown |= {name for rule in matched for name in rule.unknown}
        unknown -= set(labels)
        kind = Kind.POSITIVE if labels else next((rule.kind for rule in matched if rule.kind), self.negative_kind)
        return Decision(status="kept", labels=tuple(labels), unknown=tuple(sorted(unknown)), kind=kind)

    def referenced_fields(self) -> list[str]:
        """The fields the rules read: what a bad row's message shows when no rule knows its values."""
        fields = [c.field or c.columns or "" for rule in self.all_rules for c in rule.when if c.file is None]
        return list(dict.fromkeys(fields))


@dataclass(frozen=True)
class Row:
    """One row as read: its values by field, every (header, value) pair, and where it came from."""

    values: Mapping[str, Any]
    file: str
    location: str  # "file:line" or "file:line#item"
    pairs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Decision:
    status: Literal["kept", "skipped", "unmatched"]
    labels: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    kind: Kind = Kind.INNOCUOUS
    reason: str = ""


def field_value(values: Mapping[str, Any], path: str) -> Any:
    """`a.b` walks objects; `a[].b` collects `b` from every item of list `a` (a list)."""
    current: Any = values
    parts = path.split(".")
    for index, part in enumerate(parts):
        many = part.endswith("[]")
        key = part[:-2] if many else part
        current = current.get(key) if isinstance(current, Mapping) else None
        if many:
            rest = ".".join(parts[index + 1 :])
            items = current if isinstance(current, list) else []
            return [field_value(item, rest) if rest else item for item in items]
    return current


class NotANumber(ValueError):
    """A value a rule reads as a number is not one (NaN, inf, "abc"): the row is bad, never a negative."""


def _column_sum(row: Row, pattern: str) -> float | None:
    """The sum of the matching columns; a blank cell is no vote (an annotator who did not see the row)."""
    numbers = [_measured(value, name) for name, value in row.pairs if fnmatch.fnmatchcase(name, pattern)]
    return float(sum(number for number in numbers if number is not None))


def _measured(value: Any, name: str) -> float | None:
    """A number a rule tests with min / max: None for an absent or blank value, else a finite number,
    else NotANumber (comparing NaN or "abc" is silently false, which made rows known negatives)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = _number(value)
    if number is None:
        raise NotANumber(f"{name} = {str(value)[:40]!r} is not a number")
    return number


def _number(value: Any) -> float | None:
    """A number, or None. A cell of comma-separated numbers (one annotator who annotated a row twice,
    as in ConvAbuse's "1, 1") is their mean: still one vote."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and "," in value:
        parts = [_number(part) for part in value.split(",")]
        numbers = [part for part in parts if part is not None]
        return sum(numbers) / len(numbers) if numbers and len(numbers) == len(parts) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _canonical(value: Any) -> str:
    """Compare labels as text: JSON 2, YAML 2 and CSV "2" are the same label; true is "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def adapters_dir() -> Path:
    """config/datasets of the config tree in use (packaged, or $TIERGATE_HOME's)."""
    return config_path("datasets")


def adapter_names() -> list[str]:
    folder = adapters_dir()
    return sorted(path.stem for path in folder.glob("*.yaml")) if folder.is_dir() else []


def validate_adapter_name(name: str) -> str:
    """A name becomes a file name: only lower-case letters, digits and underscores, and not too long."""
    if len(name) > MAX_ADAPTER_NAME or not ADAPTER_NAME.fullmatch(name):
        known = ", ".join(adapter_names())
        raise ConfigError(
            f"dataset name {name[:60]!r} must match {ADAPTER_NAME.pattern}, at most {MAX_ADAPTER_NAME} characters; known: {known}"
        )
    return name


def load_adapter(name: str, taxonomy: Taxonomy | None = None) -> Adapter:
    """Load, validate and check one adapter against the taxonomy (the packaged one by default)."""
    validate_adapter_name(name)
    path = adapters_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(adapter_names()) or 'none'}")
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a dataset adapter is a mapping")
    if data.get("name", name) != name:
        raise ConfigError(f"{path}: name {data.get('name')!r} differs from the file name {name!r}")
    try:
        adapter = Adapter.model_validate({"name": name, **data})
    except ValidationError as error:
        raise ConfigError(f"{path}: {format_validation_error(error)}") from None
    adapter.check_against(taxonomy if taxonomy is not None else load_taxonomy())
    return adapter


def load_adapters(taxonomy: Taxonomy | None = None, role: str | None = None) -> list[Adapter]:
    loaded = taxonomy if taxonomy is not None else load_taxonomy()
    adapters = [load_adapter(name, loaded) for name in adapter_names()]
    return [adapter for adapter in adapters if role is None or adapter.role == role]
