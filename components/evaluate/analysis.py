"""Error analysis on the TEST split: what each category gets wrong, and where.

Per category, the top-k false positives (highest scores among known negatives) and false
negatives (lowest scores among known positives), each with the scores of the categories the
text truly carries and of those the model flagged instead: log Exp 24 found that a category's
"false positives" were often correct and its labels incomplete, which only the texts show.
Then the category × context F1 table, because context sensitivity is a product feature.
Every number is computed on the rows that know the category's label.

Texts can be real offensive posts: each example is cut to `EXAMPLE_CHARS` here, and the HTML
report escapes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tiergate.components.evaluate.thresholds import prf
from tiergate.records import Record

EXAMPLE_CHARS = 160


def truncate(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """One line, at most `limit` characters: enough to read the error, no more of a real post than that."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def named_scores(labels: Sequence[str], scores: np.ndarray, columns: np.ndarray) -> dict[str, float]:
    return {labels[c]: round(float(scores[c]), 4) for c in columns}


def example(
    labels: Sequence[str],
    record: Record,
    row: int,
    column: int,
    scores: np.ndarray,
    flags: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
) -> dict[str, Any]:
    """One error: the text, its context, the category's score, what it truly carries and what was flagged instead."""
    others = np.arange(len(labels)) != column
    return {
        "text": truncate(record.text),
        "context": str(record.context),
        "score": round(float(scores[row, column]), 4),
        "true_labels": named_scores(labels, scores[row], np.flatnonzero(targets[row] & known[row] & others)),
        "flagged": named_scores(labels, scores[row], np.flatnonzero(flags[row] & others)),
    }


def top_errors(
    labels: Sequence[str],
    records: Sequence[Record],
    scores: np.ndarray,
    flags: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    k: int,
) -> dict[str, dict[str, Any]]:
    """Per category: the k most confident false positives and the k most confidently missed positives."""
    result: dict[str, dict[str, Any]] = {}
    for column, name in enumerate(labels):
        rows = known[:, column]
        wrong_positive = np.flatnonzero(rows & flags[:, column] & ~targets[:, column])
        wrong_negative = np.flatnonzero(rows & ~flags[:, column] & targets[:, column])
        # Stable sorts: equal scores keep record order, so the report is reproducible.
        worst_positive = wrong_positive[np.argsort(-scores[wrong_positive, column], kind="stable")][:k]
        worst_negative = wrong_negative[np.argsort(scores[wrong_negative, column], kind="stable")][:k]
        result[name] = {
            "false_positives": [example(labels, records[r], r, column, scores, flags, targets, known) for r in worst_positive],
            "false_negatives": [example(labels, records[r], r, column, scores, flags, targets, known) for r in worst_negative],
            "false_positive_count": len(wrong_positive),
            "false_negative_count": len(wrong_negative),
        }
    return result


def category_context_table(
    labels: Sequence[str], records: Sequence[Record], flags: np.ndarray, targets: np.ndarray, known: np.ndarray
) -> dict[str, Any]:
    """Rows = categories, columns = contexts: F1 and known-positive support; F1 None where there are no positives."""
    contexts = sorted({str(record.context) for record in records})
    by_context = np.array([str(record.context) for record in records])
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for column, name in enumerate(labels):
        table[name] = {}
        for context in contexts:
            rows = (by_context == context) & known[:, column]
            support = int(np.sum(targets[rows, column]))
            f1 = prf(flags[rows, column], targets[rows, column])[2] if support else None
            table[name][context] = {"f1": f1, "support": support, "known": int(rows.sum())}
    return {"contexts": contexts, "categories": table}


def error_analysis(
    labels: Sequence[str],
    records: Sequence[Record],
    scores: np.ndarray,
    flags: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    k: int,
) -> dict[str, Any]:
    """The `error_analysis` entry of metrics.json."""
    return {
        "k": k,
        "example_chars": EXAMPLE_CHARS,
        "categories": top_errors(labels, records, scores, flags, targets, known, k),
        "category_context": category_context_table(labels, records, flags, targets, known),
    }
