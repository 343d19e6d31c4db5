"""Uncertainty sampling: a prediction whose score lies within a configured margin of a category's
threshold is a boundary case, the most useful thing a reviewer can label. The client samples such
predictions at a configured rate and sends them to the review queue (source `uncertainty`)."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from tiergate.errors import InputDataError


def near_threshold(scores: Mapping[str, float], thresholds: Mapping[str, float], margin: float) -> list[str]:
    """The categories whose score is within `margin` of their threshold (inclusive), by name."""
    missing = sorted(set(scores) - set(thresholds))
    if missing:
        raise InputDataError(f"no threshold for {missing[:3]}: scores and thresholds must name the same categories")
    return sorted(name for name, score in scores.items() if _within(abs(float(score) - float(thresholds[name])), margin))


def _within(distance: float, margin: float) -> bool:
    """distance <= margin, with 0.75 - 0.70 (0.05000000000000004 in binary) counted as 0.05."""
    return distance <= margin or math.isclose(distance, margin)


class UncertaintySampler:
    """Decides, per prediction, whether it goes to review: near a threshold, and drawn at `rate`."""

    def __init__(self, thresholds: Mapping[str, float], margin: float, rate: float, rng: random.Random | None = None):
        if not 0 < margin < 1 or not 0 <= rate <= 1:
            raise InputDataError(f"uncertainty sampling needs 0 < margin < 1 and 0 <= rate <= 1, got {margin} and {rate}")
        self.thresholds = dict(thresholds)
        self.margin = margin
        self.rate = rate
        self.rng = rng or random.Random()

    def __call__(self, scores: Mapping[str, float]) -> list[str]:
        """The boundary categories when this prediction is sampled; [] when it is not."""
        near = near_threshold(scores, self.thresholds, self.margin)
        return near if near and self.rng.random() < self.rate else []
