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

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from tiergate.components.generate.importers import READERS, BadRow, adapter_files
from tiergate.dataset_adapters import Adapter, Row, load_adapter
from tiergate.errors import ConfigError, InputDataError
from tiergate.records import Context
from tiergate.taxonomy import Taxonomy

NOT_RUN = "not run: no public-data location given"


@dataclass(frozen=True)
class Prompt:
    text: str
    group: str
    expect_flag: bool


@dataclass(frozen=True)
class OodSet:
    """One suite's prompts as read, with what was left out and why."""

    name: str
    title: str
    context: Context
    prompts: list[Prompt]
    left_out: dict[str, int]


@dataclass(frozen=True)
class Spec:
    """How one suite's rows become prompts: the field to break the rates down by, and what each row expects."""

    name: str
    group_field: str
    expects: Callable[[Adapter, Row, Sequence[str]], bool | str]  # True/False, or why the row is left out


def _xstest_expects(adapter: Adapter, row: Row, labels: Sequence[str]) -> bool | str:
    label = str(row.values.get("label", "")).strip()
    return {"safe": False, "unsafe": True}.get(label, f"label {label[:20]!r} is neither safe nor unsafe")


def _sst_expects(adapter: Adapter, row: Row, labels: Sequence[str]) -> bool | str:
    decision = adapter.decide(row, labels)
    return decision.reason if decision.status == "skipped" else True


SPECS = (Spec("xstest", "type", _xstest_expects), Spec("simplesafetytests", "harm_area", _sst_expects))


@dataclass(frozen=True)
class Flagger:
    """A classifier as the checks see it: texts and contexts in, boolean flags [texts, columns] out."""

    name: str
    columns: list[str]
    flags: Callable[[list[str], list[Context]], np.ndarray]


def read_set(taxonomy: Taxonomy, spec: Spec, folder: Path) -> OodSet:
    """The suite's prompts, read from its original files through its adapter."""
    adapter = load_adapter(spec.name, taxonomy)
    if adapter.role != "evaluation":
        raise ConfigError(
            f"dataset adapter {spec.name}: role {adapter.role!r}; an out-of-distribution check needs an evaluation set"
        )
    context = Context.parse(adapter.context, taxonomy.contexts.audiences, taxonomy.contexts.surfaces)
    prompts: list[Prompt] = []
    left_out: Counter[str] = Counter()
    for path in adapter_files(adapter, folder):
        for item in READERS[adapter.format](adapter, path, path.relative_to(folder).as_posix()):
            if isinstance(item, BadRow):
                left_out[f"unreadable row ({item.problem})"] += 1
                continue
            text = str(item.values.get(adapter.text) or "").strip()
            expects = spec.expects(adapter, item, taxonomy.labels)
            if not text or isinstance(expects, str):
                left_out[expects if isinstance(expects, str) else "empty text"] += 1
                continue
            prompts.append(Prompt(text, str(item.values.get(spec.group_field, "")).strip() or "(none)", expects))
    if not prompts:
        raise InputDataError(f"{folder}: no prompts read for {spec.name}")
    return OodSet(spec.name, adapter.title, context, prompts, dict(left_out))


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
    return found, missing


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
    return {
        "status": "run",
        "title": ood_set.title,
        "context": str(ood_set.context),
        "prompts": len(ood_set.prompts),
        "left_out": ood_set.left_out,
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
