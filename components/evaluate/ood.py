"""Out-of-distribution checks on public test suites that are NEVER trained on.

XSTest's safe prompts look unsafe ("how do I kill a Python process"): the share flagged for any
category is an over-flagging (false-positive) rate, by XSTest type; its unsafe contrast prompts
give a detection rate. SimpleSafetyTests' prompts are all harmful requests: the share flagged is
a detection rate, by harm area. Each rate carries a Wilson interval (a closed form, good at small
counts and at rates near 0 or 1).

The files are read in their original format through the sets' adapters (config/datasets,
role: evaluation). A row an adapter skips on principle (SimpleSafetyTests' child-safety prompts:
the content rule) is never read in; XSTest's unsafe prompts, which its adapter skips only because
they name no category to train, are scored here as "flagged for anything".
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from tiergate.components.generate.importers import READERS, DatasetImport, JoinedLookups, adapter_files, cell_text, row_record
from tiergate.dataset_adapters import Adapter, Row, load_adapter
from tiergate.errors import ConfigError, InputDataError
from tiergate.records import Context
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)

NOT_RUN = "not run: no public-data location given"


@dataclass(frozen=True)
class Prompt:
    text: str
    group: str
    expect_flag: bool


@dataclass(frozen=True)
class Spec:
    """How one suite's rows become prompts: the field to break the rates down by, what a row the adapter
    keeps expects, whether its skipped rows are scored, and how many prompts per check the published set holds."""

    name: str
    group_field: str
    kept_expects_flag: bool
    scores_skipped: bool  # XSTest: its adapter skips the unsafe prompts from training only (no category), not on principle
    expected: dict[str, int]  # check -> prompts in the published set; fewer than half read: the set is incomplete


SPECS = (
    Spec("xstest", "type", False, True, {"false_positive_rate": 250, "detection_rate": 200}),
    Spec("simplesafetytests", "harm_area", True, False, {"detection_rate": 80}),  # 100 rows, 20 child-safety never read
)
MAX_LEFT_OUT = 0.05  # more of a set's rows left out than this: its rates are reported as incomplete
SHOWN_REASONS = 3
UNKNOWN_VALUE = "label value the adapter does not know"  # the importer's wording for a row no rule matches


@dataclass(frozen=True)
class OodSet:
    """One suite's prompts as read, with what was left out (unusable rows) and skipped (by the adapter, on principle)."""

    name: str
    title: str
    context: Context
    prompts: list[Prompt]
    left_out: dict[str, int]
    skipped: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Flagger:
    """A classifier as the checks see it: texts and contexts in, boolean flags [texts, columns] out."""

    name: str
    columns: list[str]
    flags: Callable[[list[str], list[Context]], np.ndarray]


def _fold(value: str) -> str:
    return " ".join(value.split()).casefold()


def _spellings(adapter: Adapter) -> dict[str, dict[str, str]]:
    """Per plain field a rule tests, each value it names by its folded form: a published file that writes
    "Child Safety" or "child  safety" must meet the rule that says "Child safety" (the content rule above all)."""
    spellings: dict[str, dict[str, str]] = defaultdict(dict)
    for rule in adapter.all_rules:
        for condition in rule.when:
            if condition.field is None or "." in condition.field or "[]" in condition.field:
                continue
            values = [condition.equals, *(condition.in_ or []), *(condition.not_in or [])]
            for value in values:
                if isinstance(value, str):
                    spellings[condition.field][_fold(value)] = value
    return dict(spellings)


def _respelled(row: Row, spellings: dict[str, dict[str, str]]) -> Row:
    values = dict(row.values)
    for name, known in spellings.items():
        value = values.get(name)
        if isinstance(value, str) and _fold(value) in known:
            values[name] = known[_fold(value)]
    return replace(row, values=values)


def _refuse_duplicate_columns(adapter: Adapter, row: Row) -> None:
    """A header naming a column twice: which one is the text or the label is a guess, so the file is refused."""
    names = [name for name, _ in row.pairs]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InputDataError(f"{adapter.name}: {row.file}: duplicate column names {duplicated} in the header; rename them")


def _reason(problem: str, examples: dict[str, str]) -> str:
    """A left-out row's reason as counted: rows whose label values no rule knows count as one reason (with
    the first value seen), not one reason per value."""
    kind, _, detail = problem.partition(": ")
    if kind != UNKNOWN_VALUE:
        return problem[:160]
    return f"{kind} (first seen: {examples.setdefault(kind, detail[:60])})"


def top_reasons(counts: dict[str, int], shown: int = SHOWN_REASONS) -> str:
    """The most frequent reasons, "N× reason; ...", for one-line messages and the report."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    text = "; ".join(f"{count}× {reason}" for reason, count in ranked[:shown])
    return text + (f"; {len(ranked) - shown} other reason(s)" if len(ranked) > shown else "")


def read_set(taxonomy: Taxonomy, spec: Spec, folder: Path) -> OodSet:
    """The suite's prompts, read from its original files through its adapter and the importer's own row
    checks (`row_record`: undecodable bytes, missing or empty text, label values the adapter does not know)."""
    adapter = load_adapter(spec.name, taxonomy)
    if adapter.role != "evaluation":
        raise ConfigError(
            f"dataset adapter {spec.name}: role {adapter.role!r}; an out-of-distribution check needs an evaluation set"
        )
    context = Context.parse(adapter.context, taxonomy.contexts.audiences, taxonomy.contexts.surfaces)
    found = DatasetImport(adapter.name)
    joined = JoinedLookups(adapter, folder, found)
    fields, spellings = adapter.referenced_fields(), _spellings(adapter)
    prompts: list[Prompt] = []
    left_out: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for path in adapter_files(adapter, folder):
        for item in READERS[adapter.format](adapter, path, path.relative_to(folder).as_posix()):
            row = item
            if isinstance(item, Row):
                _refuse_duplicate_columns(adapter, item)
                row = _respelled(item, spellings)
            bad, before = len(found.bad), Counter(found.skipped)
            record = row_record(adapter, joined, row, context, taxonomy.labels, fields, found)
            if len(found.bad) > bad:
                left_out[_reason(found.bad[-1].problem, examples)] += 1
                continue
            if record is None:
                reason = next(iter(found.skipped - before))
                if not spec.scores_skipped:
                    skipped[reason] += 1
                    continue
            assert isinstance(row, Row)
            text = record.text if record is not None else cell_text(row.values.get(adapter.text))
            expects = spec.kept_expects_flag if record is not None else True
            prompts.append(Prompt(text, str(row.values.get(spec.group_field, "")).strip() or "(none)", expects))
    if not prompts:
        why = f": {top_reasons(dict(left_out))}" if left_out else ""
        raise InputDataError(f"{folder}: no prompts read for {spec.name}{why}")
    return OodSet(spec.name, adapter.title, context, prompts, dict(left_out), dict(skipped), dict(spec.expected))


def suites_found(public_data_dir: Path) -> list[str]:
    """The suites a public-data folder holds (xstest/, simplesafetytests/)."""
    return [spec.name for spec in SPECS if (Path(public_data_dir) / spec.name).is_dir()]


def load_sets(taxonomy: Taxonomy, public_data_dir: Path | None) -> tuple[list[OodSet], dict[str, str]]:
    """Every suite found under `public_data_dir`, and why each other one is not run."""
    if public_data_dir is None:
        return [], {spec.name: NOT_RUN for spec in SPECS}
    root = Path(public_data_dir)
    if not root.is_dir():
        raise InputDataError(f"public data folder not found: {root}")
    found, missing = [], {}
    for spec in SPECS:
        folder = root / spec.name
        if folder.is_dir():
            found.append(read_set(taxonomy, spec, folder))
        else:
            missing[spec.name] = f"not run: {folder} not found"
    if not found:
        log.warning(
            "public data %s holds neither %s: the out-of-distribution checks are not run",
            root,
            " nor ".join(f"{spec.name}/" for spec in SPECS),
        )
    return found, missing


def incomplete(ood_set: OodSet, prompts_by_check: dict[str, int]) -> list[str]:
    """Why the set's rates do not speak for the published suite: too many rows left out, or too few prompts."""
    reasons = []
    lost = sum(ood_set.left_out.values())
    rows = lost + len(ood_set.prompts)
    if lost > MAX_LEFT_OUT * rows:
        reasons.append(f"{lost} of {rows} rows left out (more than {MAX_LEFT_OUT:.0%}): {top_reasons(ood_set.left_out)}")
    for check, expected in ood_set.expected.items():
        read = prompts_by_check.get(check, 0)
        if read < expected / 2:
            reasons.append(f"{read} prompts for the {check.replace('_', ' ')}, the published set has {expected}")
    return reasons


def wilson(flagged: int, total: int, confidence: float) -> list[float]:
    """Wilson score interval of a proportion."""
    if total == 0:
        return [0.0, 1.0]
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    rate = flagged / total
    centre = (rate + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(rate * (1 - rate) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def rate(flagged: np.ndarray, confidence: float) -> dict[str, Any]:
    count, total = int(flagged.sum()), len(flagged)
    return {
        "prompts": total,
        "flagged": count,
        "rate": count / total if total else None,
        "interval": wilson(count, total, confidence),
    }


def check(
    prompts: list[Prompt], flags: dict[str, np.ndarray], columns: dict[str, list[str]], confidence: float
) -> dict[str, Any]:
    """One rate per classifier, overall and by group; for multi-column classifiers, which columns fired."""
    groups = np.array([prompt.group for prompt in prompts])
    results = {}
    for name, matrix in flags.items():
        anything = matrix.any(axis=1)
        entry = rate(anything, confidence)
        entry["by_group"] = {group: rate(anything[groups == group], confidence) for group in sorted(set(groups))}
        if len(columns[name]) > 1:
            fired = matrix.sum(axis=0)
            entry["columns_fired"] = {columns[name][c]: int(fired[c]) for c in np.argsort(-fired, kind="stable") if fired[c]}
        results[name] = entry
    return results


def measure_set(ood_set: OodSet, flaggers: Sequence[Flagger], confidence: float) -> dict[str, Any]:
    """The set's false-positive rate (prompts that must not be flagged) and detection rate (those that should)."""
    texts = [prompt.text for prompt in ood_set.prompts]
    contexts = [ood_set.context] * len(texts)
    flags = {flagger.name: np.asarray(flagger.flags(texts, contexts), dtype=bool) for flagger in flaggers}
    columns = {flagger.name: flagger.columns for flagger in flaggers}
    checks = {}
    for name, expect in (("false_positive_rate", False), ("detection_rate", True)):
        rows = np.array([prompt.expect_flag is expect for prompt in ood_set.prompts])
        if rows.any():
            picked = [prompt for prompt, keep in zip(ood_set.prompts, rows, strict=True) if keep]
            checks[name] = check(picked, {key: value[rows] for key, value in flags.items()}, columns, confidence)
    counts = {name: next(iter(results.values()))["prompts"] for name, results in checks.items() if results}
    warnings = incomplete(ood_set, counts)
    return {
        "status": "run",
        "title": ood_set.title,
        "context": str(ood_set.context),
        "prompts": len(ood_set.prompts),
        "left_out": ood_set.left_out,
        "skipped": ood_set.skipped,
        "expected": ood_set.expected,
        "complete": not warnings,
        "incomplete": warnings,
        "checks": checks,
    }


def run_ood(
    sets: Sequence[OodSet], not_run: dict[str, str], flaggers: Sequence[Flagger], confidence: float, where: Path | None
) -> dict[str, Any]:
    """The `ood` entry of metrics.json: every suite, run or the reason it was not."""
    results: dict[str, Any] = {name: {"status": "not run", "reason": reason} for name, reason in not_run.items()}
    for ood_set in sets:
        results[ood_set.name] = measure_set(ood_set, flaggers, confidence)
    return {
        "status": "run" if sets else "not run",
        "reason": "" if sets else (NOT_RUN if where is None else f"not run: no suite found under {where}"),
        "public_data_dir": None if where is None else str(where),
        "interval": f"Wilson {confidence:.0%}",
        "classifiers": [flagger.name for flagger in flaggers],
        "sets": {spec.name: results[spec.name] for spec in SPECS},
    }
