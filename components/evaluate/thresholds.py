"""Per-category threshold search on the VALIDATION split, inside each tier's range.

Ranges come from the taxonomy (tier range narrowed by per-category overrides, e.g.
harassment <= 0.65: val-set skew once pushed it to 0.90; docs/lessons.md#val-test-threshold-skew). Objective: F1, subject to
the tier's recall floor where one exists. Ties resolve to the middle of the best plateau.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tiergate.taxonomy import Taxonomy


def candidates(low: float, high: float, step: float) -> np.ndarray:
    count = int(np.floor((high - low) / step + 1e-9)) + 1
    return np.round(low + step * np.arange(count), 6)


def prf(flags: np.ndarray, targets: np.ndarray, known: np.ndarray | None = None) -> tuple[float, float, float]:
    """Precision, recall, F1 of boolean decisions (any shape) over the `known` cells; 0 where undefined."""
    if known is not None:
        flags, targets = flags & known, targets & known
    true_positive, predicted, actual = float(np.sum(flags & targets)), float(np.sum(flags)), float(np.sum(targets))
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    return precision, recall, (0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def precision_recall_f1(scores: np.ndarray, targets: np.ndarray, threshold: float) -> tuple[float, float, float]:
    return prf(scores >= threshold, targets)


def search_threshold(
    scores: np.ndarray, targets: np.ndarray, low: float, high: float, step: float, recall_floor: float | None
) -> dict[str, Any]:
    grid = candidates(low, high, step)
    if not targets.any():
        middle = float(grid[len(grid) // 2])
        return {
            "threshold": middle,
            "val_f1": None,
            "val_recall": None,
            "val_precision": None,
            "range": [low, high],
            "note": "no validation positives; middle of the range",
        }
    stats = np.array([precision_recall_f1(scores, targets, float(t)) for t in grid])
    eligible = np.ones(len(grid), dtype=bool) if recall_floor is None else stats[:, 1] >= recall_floor
    note = ""
    if not eligible.any():
        # Recall only falls as the threshold rises: the range's lower bound keeps the most.
        eligible = np.zeros(len(grid), dtype=bool)
        eligible[0] = True
        note = f"recall floor {recall_floor} unreachable on val in range; lowest threshold in range chosen"
    best = stats[eligible, 2].max()
    plateau = np.flatnonzero(eligible & np.isclose(stats[:, 2], best))
    index = int(plateau[len(plateau) // 2])
    precision, recall, f1 = stats[index]
    return {
        "threshold": float(grid[index]),
        "val_f1": float(f1),
        "val_recall": float(recall),
        "val_precision": float(precision),
        "range": [low, high],
        "note": note,
    }


def tune_thresholds(
    taxonomy: Taxonomy, val_scores: np.ndarray, val_targets: np.ndarray, val_known: np.ndarray | None = None
) -> dict[str, Any]:
    """The thresholds.json document: thresholds, label list, taxonomy hash and the search record.

    Each category is tuned on the validation rows that know its label (`val_known`); a row whose
    source left it unknown is neither a positive nor a negative for it."""
    known = np.ones_like(val_targets, dtype=bool) if val_known is None else val_known
    search = {}
    for column, name in enumerate(taxonomy.labels):
        low, high = taxonomy.threshold_bounds(name)
        rows = known[:, column]
        search[name] = search_threshold(
            val_scores[rows, column],
            val_targets[rows, column].astype(bool),
            low,
            high,
            taxonomy.threshold_search.step,
            taxonomy.tier_of(name).recall_floor,
        )
        search[name]["known_rows"] = int(rows.sum())
    return {
        "labels": taxonomy.labels,
        "taxonomy_sha256": taxonomy.labels_sha256,
        "thresholds": {name: entry["threshold"] for name, entry in search.items()},
        "tiers": dict(zip(taxonomy.labels, taxonomy.tier_vector(), strict=True)),
        "optional": taxonomy.optional_labels(),
        "search": search,
    }
