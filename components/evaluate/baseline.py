"""A linear baseline beside the model: does the transformer beat a bag-of-words profanity classifier?

The baseline is alt-profanity-check (a TF-IDF + linear SVM trained on public toxic comments; runs
offline, no weights to download). It gives one score per text, so it is compared with the model
where one score can speak: "flagged for anything" against "carries any known positive", and the
categories it was trained for (profanity, harassment, hate speech). Same test rows, same metrics
(precision, recall, F1 at its own 0.5 cut, and AUPRC), only rows that know the label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from tiergate.components.evaluate.ood import Flagger
from tiergate.components.evaluate.thresholds import prf
from tiergate.records import Context, Record

BASELINE_NAME = "alt-profanity-check 1.9.1"
BASELINE_CUT = 0.5  # the library's own predict(): a score of 0.5 or more is profane
BASELINE_CATEGORIES = ("profanity", "harassment", "hate_speech")


def baseline_scores(texts: Sequence[str]) -> np.ndarray:
    """The baseline's probability per text (imported here: loading its model takes a moment)."""
    from profanity_check import predict_prob  # type: ignore[import-untyped]

    if not texts:
        return np.zeros(0)
    return np.asarray(predict_prob(list(texts)), dtype=float)


def baseline_flagger() -> Flagger:
    """The baseline as the out-of-distribution checks run it: one column, flagged at its own cut."""

    def flags(texts: list[str], contexts: list[Context]) -> np.ndarray:
        return (baseline_scores(texts) >= BASELINE_CUT)[:, None]

    return Flagger("baseline", ["profanity_check"], flags)


def row_metrics(flags: np.ndarray, scores: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1 of the decisions and AUPRC of the scores (None without positives)."""
    precision, recall, f1 = prf(flags.astype(bool), truth.astype(bool))
    auprc = float(average_precision_score(truth, scores)) if truth.any() else None
    return {"precision": precision, "recall": recall, "f1": f1, "auprc": auprc}


def any_positive(targets: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(truth, rows) for "is this text a violation at all": a known positive anywhere says yes; only a row
    that knows every category can say no, so rows with no known positive and some unknown cell are left out."""
    positive = (targets & known).any(axis=1)
    return positive, positive | known.all(axis=1)


def compare_with_baseline(
    labels: Sequence[str],
    records: Sequence[Record],
    scores: np.ndarray,
    flags: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    thresholds: np.ndarray,
) -> dict[str, Any]:
    """The `baseline` entry of metrics.json: the model's row and the baseline's, binary and per category."""
    base_scores = baseline_scores([record.text for record in records])
    base_flags = base_scores >= BASELINE_CUT
    truth, rows = any_positive(targets, known)
    # The model's "anything" score: how far the most-over-threshold category is past its threshold,
    # so the ranking agrees with its decisions (flagged exactly when the margin is >= 0).
    margin = (scores - thresholds[None, :]).max(axis=1) if len(records) else np.zeros(0)
    categories = {}
    for name in BASELINE_CATEGORIES:
        if name not in labels:
            continue
        column = labels.index(name)
        known_rows = known[:, column]
        actual = targets[known_rows, column]
        categories[name] = {
            "rows": int(known_rows.sum()),
            "support": int(actual.sum()),
            "model": row_metrics(flags[known_rows, column], scores[known_rows, column], actual),
            "baseline": row_metrics(base_flags[known_rows], base_scores[known_rows], actual),
        }
    return {
        "name": BASELINE_NAME,
        "cut": BASELINE_CUT,
        "binary": {
            "rows": int(rows.sum()),
            "support": int(truth[rows].sum()),
            "model": row_metrics(flags.any(axis=1)[rows], margin[rows], truth[rows]),
            "baseline": row_metrics(base_flags[rows], base_scores[rows], truth[rows]),
        },
        "categories": categories,
    }
