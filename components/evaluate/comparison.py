"""The candidate against the previously promoted model, on the same test rows.

The previous model is a packaged Triton repository (what `components/package` writes), run
in-process with its own thresholds. Per category: F1 of each, the change (current − previous)
and a paired-bootstrap interval of that change — both models scored on the same resampled rows,
so the interval measures the difference, not two independent noises. A category the taxonomy's
`comparison` lists whose F1 falls by more than `max_f1_drop`, with the interval's upper bound
below zero, blocks promotion (the rule itself is `tiergate.gate.comparison_rules`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tiergate.artifacts import RepositoryLayout
from tiergate.components.evaluate.thresholds import prf
from tiergate.errors import InputDataError, TiergateError
from tiergate.inference import ModerationPipeline, ThresholdSet
from tiergate.onnx_model import check_onnx_labels
from tiergate.taxonomy import Taxonomy
from tiergate.trust import verify_local_repository

FIRST_MODEL = "first model: nothing to compare"
CHUNK = 100  # bootstrap samples per matrix product: bounded memory on a large test split


@dataclass(frozen=True)
class PreviousModel:
    directory: Path
    pipeline: ModerationPipeline
    model_version: str
    repository_digest: str


def load_previous(taxonomy: Taxonomy, directory: Path | None, batch_size: int) -> PreviousModel | None:
    """The previous model's served path, or None. The folder is verified like any repository the store
    loads (manifest, every file's digest, the gate that judged them): a tampered or unpackaged model is
    refused, never compared under the real version's name. Its ONNX model is opened and its labels
    checked here, so a broken previous model fails before the candidate's inference, in one line."""
    if directory is None:
        return None
    root = Path(directory)
    where = f"previous model {root}"
    if not root.is_dir():
        raise InputDataError(f"{where}: folder not found")
    verified = verify_local_repository(root, where=where)
    manifest = verified.manifest
    if manifest.taxonomy_sha256 != taxonomy.labels_sha256:
        raise InputDataError(
            f"{where} was built for another taxonomy (labels sha256 {manifest.taxonomy_sha256[:12]}, "
            f"this one {taxonomy.labels_sha256[:12]}); its scores cannot be compared"
        )
    layout = RepositoryLayout(root)
    try:
        check_onnx_labels(layout.classifier_onnx, taxonomy)
        pipeline = ModerationPipeline(
            layout.classifier_onnx, layout.tokenizer_dir, ThresholdSet.load(layout.thresholds, taxonomy.labels), batch_size
        )
    except TiergateError:
        raise
    except Exception as error:  # onnxruntime / tokenizers on a corrupt file: their own exception types
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise InputDataError(f"{where}: cannot load its model ({type(error).__name__}: {detail})") from None
    return PreviousModel(root, pipeline, manifest.model_version, manifest.digest)


def _f1(true_positives: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """F1 from counts, 2·TP / (predicted + actual); 0 where both are zero (as `prf`)."""
    denominator = predicted + actual
    return np.divide(2 * true_positives, denominator, out=np.zeros_like(denominator, dtype=float), where=denominator > 0)


def paired_intervals(
    current: np.ndarray, previous: np.ndarray, targets: np.ndarray, known: np.ndarray, samples: int, confidence: float, seed: int
) -> np.ndarray:
    """Per category, the percentile interval of F1(current) − F1(previous) over resampled test rows.

    Each resample draws test rows with replacement once and scores both models on those same rows
    (known cells only). Returns [categories, 2]; with no samples the interval is the point change itself.
    """
    actual = (targets & known).astype(float)
    counts = [(current & targets & known), (current & known), (previous & targets & known), (previous & known)]
    matrices = [matrix.astype(float) for matrix in counts]
    if samples == 0 or len(targets) == 0:
        tp_now, predicted_now, tp_before, predicted_before = (matrix.sum(axis=0) for matrix in matrices)
        positives = actual.sum(axis=0)
        point = _f1(tp_now, predicted_now, positives) - _f1(tp_before, predicted_before, positives)
        return np.stack([point, point], axis=1)
    rng = np.random.default_rng(seed)
    rows = len(targets)
    deltas = []
    for start in range(0, samples, CHUNK):
        size = min(CHUNK, samples - start)
        picks = rng.integers(0, rows, (size, rows)) + rows * np.arange(size)[:, None]
        weights = np.bincount(picks.ravel(), minlength=size * rows).reshape(size, rows).astype(float)
        tp_now, predicted_now, tp_before, predicted_before = (weights @ matrix for matrix in matrices)
        positives = weights @ actual
        deltas.append(_f1(tp_now, predicted_now, positives) - _f1(tp_before, predicted_before, positives))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(deltas), [tail, 100 - tail], axis=0)
    return np.stack([low, high], axis=1)


def compare(
    taxonomy: Taxonomy,
    previous: PreviousModel | None,
    current: np.ndarray,
    previous_flags: np.ndarray | None,
    targets: np.ndarray,
    known: np.ndarray,
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """The `comparison` entry of metrics.json (what the gate's comparison rules read)."""
    tolerance = None if taxonomy.comparison is None else taxonomy.comparison.max_f1_drop
    if previous is None or previous_flags is None:
        return {"status": "first model", "note": FIRST_MODEL, "max_f1_drop": tolerance, "categories": {}, "blocking": []}
    protected = set(taxonomy.compared_categories())
    intervals = paired_intervals(current, previous_flags, targets, known, samples, confidence, seed)
    categories = {}
    for column, name in enumerate(taxonomy.labels):
        rows = known[:, column]
        now = prf(current[rows, column], targets[rows, column])[2]
        before = prf(previous_flags[rows, column], targets[rows, column])[2]
        low, high = (float(bound) for bound in intervals[column])
        delta = now - before
        categories[name] = {
            "previous_f1": before,
            "current_f1": now,
            "delta": delta,
            "interval": [low, high],
            "rows": int(rows.sum()),  # 0: neither F1 is measured here (the report says n/a)
            "support": int(targets[rows, column].sum()),
            "protected": name in protected,
            "blocks": name in protected and tolerance is not None and delta < -tolerance and high < 0,
        }
    return {
        "status": "compared",
        "note": (
            f"against version {previous.model_version} (repository {previous.repository_digest[:12]}) at {previous.directory}"
        ),
        "previous": {
            "directory": str(previous.directory),
            "model_version": previous.model_version,
            "repository_digest": previous.repository_digest,
            "model_sha256": previous.pipeline.model_sha256,
        },
        "max_f1_drop": tolerance,
        "confidence": confidence,
        "bootstrap_samples": samples,
        "categories": categories,
        "blocking": [name for name, entry in categories.items() if entry["blocks"]],
    }
