"""Metrics on the TEST split at the thresholds tuned on validation.

Per category P/R/F1/support with bootstrap intervals, per tier, macro and micro, per
context, PR curves, which true labels the errors carry, the val-vs-test gap (log: val/test
threshold skew) and a not-measurable flag for categories with too few test positives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from tiergate.components.evaluate.thresholds import prf
from tiergate.records import Record, source_name
from tiergate.taxonomy import Taxonomy


def bootstrap_intervals(
    flags: np.ndarray, targets: np.ndarray, samples: int, confidence: float, seed: int
) -> dict[str, list[float]]:
    """Percentile intervals of precision, recall and F1 over resampled test rows."""
    if samples == 0 or len(targets) == 0:
        return {}
    rng = np.random.default_rng(seed)
    values = np.empty((samples, 3))
    rows = len(targets)
    for index in range(samples):
        pick = rng.integers(0, rows, rows)
        values[index] = prf(flags[pick], targets[pick])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return {name: [float(low[i]), float(high[i])] for i, name in enumerate(("precision", "recall", "f1"))}


def pr_curve(scores: np.ndarray, targets: np.ndarray, points: int) -> dict[str, list[float]]:
    """Interpolated PR curve: the best precision reached at each distinct recall, at most `points` of them."""
    if not targets.any():
        return {"precision": [], "recall": [], "thresholds": []}
    precision, recall, thresholds = precision_recall_curve(targets, scores)
    best: dict[float, tuple[float, float]] = {}
    for p, r, t in zip(precision[:-1], recall[:-1], thresholds, strict=True):
        key = round(float(r), 4)
        if key not in best or p > best[key][0]:
            best[key] = (float(p), float(t))
    recalls = sorted(best)
    keep = sorted({recalls[int(i)] for i in np.linspace(0, len(recalls) - 1, min(points, len(recalls)))})
    return {"precision": [round(best[r][0], 4) for r in keep], "recall": keep, "thresholds": [round(best[r][1], 4) for r in keep]}


def evaluate_split(
    taxonomy: Taxonomy,
    records: Sequence[Record],
    scores: np.ndarray,
    flags: np.ndarray,
    targets: np.ndarray,
    thresholds: dict[str, Any],
    min_support: int,
    bootstrap_samples: int,
    confidence: float,
    seed: int,
    pr_points: int,
    known: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every test metric the gate and the report read, at the tuned thresholds.

    Each category is scored on the rows that know its label (`known`, default all): a public set's
    row is never counted as a false positive for a category its source did not label."""
    labels, tiers_by_column = taxonomy.labels, taxonomy.tier_vector()
    known = np.ones_like(targets, dtype=bool) if known is None else known
    per_category: dict[str, Any] = {}
    for column, name in enumerate(labels):
        rows = known[:, column]
        predicted, actual = flags[rows, column], targets[rows, column]
        precision, recall, f1 = prf(predicted, actual)
        support = int(actual.sum())
        val_f1 = thresholds["search"][name]["val_f1"]
        per_category[name] = {
            "tier": tiers_by_column[column],
            "threshold": thresholds["thresholds"][name],
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "known": int(rows.sum()),
            "false_positives": int(np.sum(predicted & ~actual)),
            "false_negatives": int(np.sum(~predicted & actual)),
            "measurable": support >= min_support,
            "interval": bootstrap_intervals(predicted, actual, bootstrap_samples, confidence, seed + column),
            "val_f1": val_f1,
            "val_test_gap": None if val_f1 is None else float(val_f1 - f1),
            "false_positive_true_labels": false_positive_true_labels(labels, column, predicted, actual, targets[rows]),
            "pr_curve": pr_curve(scores[rows, column], actual, pr_points),
        }
    measured = [entry for entry in per_category.values() if entry["support"] > 0]
    micro = prf(flags, targets, known)
    return {
        "records": len(records),
        "per_category": per_category,
        "macro_f1": float(np.mean([entry["f1"] for entry in measured])) if measured else 0.0,
        "micro_f1": micro[2],
        "micro_precision": micro[0],
        "micro_recall": micro[1],
        "tiers": tier_metrics(taxonomy, per_category),
        "contexts": context_metrics(records, flags, targets, known),
        "sources": source_metrics(records, flags, targets, known),
        "not_measurable": [name for name, entry in per_category.items() if not entry["measurable"]],
    }


def false_positive_true_labels(
    labels: Sequence[str], column: int, predicted: np.ndarray, actual: np.ndarray, targets: np.ndarray
) -> dict[str, int]:
    """For one category's false positives, the labels those texts really carry: what it is confused with."""
    errors: Counter[str] = Counter()
    for row in np.flatnonzero(predicted & ~actual):
        others = [labels[c] for c in np.flatnonzero(targets[row]) if c != column]
        errors.update(others or ["(no label)"])
    return dict(errors.most_common())


def tier_metrics(taxonomy: Taxonomy, per_category: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Macro F1 per tier over the categories with test positives (the tiers' gates read these)."""
    tiers = {}
    for tier in sorted(taxonomy.tiers):
        members = [entry["f1"] for entry in per_category.values() if entry["tier"] == tier and entry["support"] > 0]
        tiers[tier] = {"macro_f1": float(np.mean(members)) if members else None, "categories": len(members)}
    return tiers


def source_metrics(records: Sequence[Record], flags: np.ndarray, targets: np.ndarray, known: np.ndarray) -> dict[str, Any]:
    """Macro and micro F1 per data source (`public:<set>`, a generator): in-distribution generated data
    proves the plumbing, the public sets say whether the model means something on real text."""
    names = [source_name(record) for record in records]
    sources: dict[str, Any] = {}
    for source in sorted(set(names)):
        rows = np.array([name == source for name in names])
        sub_flags, sub_targets, sub_known = flags[rows], targets[rows], known[rows]
        per_category = {
            column: prf(sub_flags[:, column], sub_targets[:, column], sub_known[:, column])[2]
            for column in range(flags.shape[1])
            if (sub_targets[:, column] & sub_known[:, column]).any()
        }
        negatives_flagged = (sub_flags & sub_known & ~sub_targets).any(axis=1) & ~(sub_targets & sub_known).any(axis=1)
        clean_rows = ~(sub_targets & sub_known).any(axis=1)
        sources[source] = {
            "records": int(rows.sum()),
            "macro_f1": float(np.mean(list(per_category.values()))) if per_category else None,
            "micro_f1": prf(sub_flags, sub_targets, sub_known)[2],
            "categories": len(per_category),
            "negative_rows": int(clean_rows.sum()),
            "negative_rows_flagged": int(negatives_flagged.sum()),
        }
    return sources


def context_metrics(
    records: Sequence[Record], flags: np.ndarray, targets: np.ndarray, known: np.ndarray | None = None
) -> dict[str, Any]:
    """Macro and micro F1 per context (audience/surface), known cells only: context sensitivity is a product feature."""
    known = np.ones_like(targets, dtype=bool) if known is None else known
    contexts: dict[str, Any] = {}
    for context in sorted({str(record.context) for record in records}):
        rows = np.array([str(record.context) == context for record in records])
        sub_flags, sub_targets, sub_known = flags[rows], targets[rows], known[rows]
        values = [
            prf(sub_flags[:, c], sub_targets[:, c], sub_known[:, c])[2]
            for c in range(flags.shape[1])
            if (sub_targets[:, c] & sub_known[:, c]).any()
        ]
        contexts[context] = {
            "records": int(rows.sum()),
            "macro_f1": float(np.mean(values)) if values else None,
            "micro_f1": prf(sub_flags, sub_targets, sub_known)[2],
        }
    return contexts
