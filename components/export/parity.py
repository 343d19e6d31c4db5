"""The parity gate: the exported model must decide like the trained one, judged on validation texts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tiergate.numeric import sigmoid


@dataclass
class ParityResult:
    name: str
    max_abs_diff: float
    mean_abs_diff: float
    decision_agreement: float
    max_abs_limit: float
    min_agreement: float
    passed: bool
    worst: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_logits(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    texts: Sequence[str],
    labels: Sequence[str],
    max_abs_limit: float,
    min_agreement: float,
    threshold: float,
    worst_count: int,
) -> ParityResult:
    """`candidate` against `reference` logits: max |diff| and decision agreement, plus the worst texts to show."""
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    agreement = float(np.mean((sigmoid(reference) >= threshold) == (sigmoid(candidate) >= threshold)))
    per_row = diff.max(axis=1)
    worst = []
    for row in np.argsort(-per_row, kind="stable")[:worst_count]:
        column = int(diff[row].argmax())
        worst.append(
            {
                "text": texts[row],
                "label": labels[column],
                "abs_diff": float(diff[row, column]),
                "reference_score": float(sigmoid(reference[row, column])),
                "candidate_score": float(sigmoid(candidate[row, column])),
            }
        )
    max_abs = float(diff.max()) if diff.size else 0.0
    passed = max_abs <= max_abs_limit and agreement >= min_agreement
    return ParityResult(
        name, max_abs, float(diff.mean()) if diff.size else 0.0, agreement, max_abs_limit, min_agreement, passed, worst
    )


def batched(run: Callable[[dict[str, np.ndarray]], np.ndarray], batches: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([run(batch) for batch in batches], axis=0)


def describe_failure(result: ParityResult) -> str:
    examples = "; ".join(f"{item['label']} on {item['text'][:60]!r}: |diff| {item['abs_diff']:.4g}" for item in result.worst[:3])
    return (
        f"parity {result.name} failed: max |logit diff| {result.max_abs_diff:.4g} (limit {result.max_abs_limit:g}), "
        f"decision agreement {result.decision_agreement:.4f} (min {result.min_agreement:g}); worst: {examples}"
    )
