"""Numeric helpers shared by training, export parity, evaluation and the post-processor."""

import numpy as np


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities in float32, computed in float64 so large |logits| neither overflow nor round to 0.5."""
    return (1.0 / (1.0 + np.exp(-np.asarray(logits).astype(np.float64)))).astype(np.float32)
