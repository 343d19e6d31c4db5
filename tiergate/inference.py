"""The serving path, in-process: tokenize → ONNX classifier → threshold post-processor.

Triton's python-backend models (tokenizer, postprocess, local classifier) call these same
classes, and evaluation runs them on the exported fp16 model, so the gate judges exactly
what is served.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tiergate.errors import InputDataError, LabelMismatchError
from tiergate.hashing import sha256_file
from tiergate.labels import check_labels
from tiergate.numeric import sigmoid
from tiergate.onnx_model import META_PREFIX, open_session, run_logits
from tiergate.preprocessing import InputEncoder, Padding, RowBatch, Windowing, pool_rows
from tiergate.records import Context


@dataclass(frozen=True)
class ThresholdSet:
    """Per-category decision thresholds plus what the post-processor needs to route."""

    labels: list[str]
    taxonomy_sha256: str
    thresholds: dict[str, float]
    tiers: dict[str, int]
    optional: list[str]

    @classmethod
    def load(cls, path: Path, expected_labels: Sequence[str] | None = None) -> ThresholdSet:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        thresholds = cls(data["labels"], data["taxonomy_sha256"], data["thresholds"], data["tiers"], data.get("optional", []))
        if expected_labels is not None:
            check_labels(thresholds.labels, expected_labels, str(path))
        missing = [name for name in thresholds.labels if name not in thresholds.thresholds]
        if missing:
            raise LabelMismatchError(f"{path}: no threshold for {missing}")
        return thresholds

    def vector(self) -> np.ndarray:
        return np.array([self.thresholds[name] for name in self.labels], dtype=np.float32)


class Preprocessor:
    """The serving path's `InputEncoder`: `max_length` padding and every window, which evaluation shares.

    Every path encodes through `tiergate.preprocessing.InputEncoder`; serving and evaluation name
    `max_length` because Triton's dynamic batcher can only batch equal shapes, and evaluation must
    feed the model exactly what the server feeds it.
    """

    PADDING: Padding = "max_length"

    def __init__(self, tokenizer_dir: Path, max_length: int, input_names: Sequence[str], windowing: Windowing | None = None):
        self.encoder = InputEncoder.load(tokenizer_dir, max_length, self.PADDING, input_names, windowing)

    def encode(self, texts: Sequence[str], contexts: Sequence[Context]) -> RowBatch:
        """Every window of every reading of each text, and how to pool the rows back per text."""
        return self.encoder.encode_rows(texts, contexts)


@dataclass
class Decisions:
    scores: np.ndarray  # float32 [batch, labels]
    flags: np.ndarray  # bool [batch, labels]
    max_tier: np.ndarray  # int32 [batch]; 0 when nothing is flagged


def most_severe_tier(flags: np.ndarray, tiers: np.ndarray) -> np.ndarray:
    """Per row, the smallest flagged tier number (tier 1 is the most severe); 0 when nothing is flagged."""
    sentinel = np.iinfo(np.int32).max
    tier = np.where(flags, tiers[None, :], sentinel).min(axis=1)
    tier[tier == sentinel] = 0
    return tier.astype(np.int32)


class Postprocessor:
    """Sigmoid, per-category thresholds, optional-category switches, max-severity tier for routing."""

    def __init__(self, thresholds: ThresholdSet):
        self.thresholds = thresholds
        self.vector = thresholds.vector()
        self.tier_vector = np.array([thresholds.tiers[name] for name in thresholds.labels], dtype=np.int32)
        self.optional_index = {name: thresholds.labels.index(name) for name in thresholds.optional}

    def decide(self, logits: np.ndarray, enabled_optional: Sequence[str] | None = None) -> Decisions:
        """`enabled_optional=None` enables every optional category; otherwise only those named."""
        if logits.ndim != 2 or logits.shape[1] != len(self.thresholds.labels):
            raise LabelMismatchError(f"logits shape {logits.shape} does not match {len(self.thresholds.labels)} labels")
        if not np.isfinite(logits).all():
            raise InputDataError("logits contain NaN or infinity; refusing to decide (never a silent 'safe')")
        scores = sigmoid(logits)
        flags = scores >= self.vector
        if enabled_optional is not None:
            unknown = set(enabled_optional) - set(self.optional_index)
            if unknown:
                raise InputDataError(f"not optional categories: {sorted(unknown)}; optional: {sorted(self.optional_index)}")
            for name, column in self.optional_index.items():
                if name not in enabled_optional:
                    flags[:, column] = False
        return Decisions(scores, flags, most_severe_tier(flags, self.tier_vector))


class OnnxClassifier:
    """The exported classifier under onnxruntime; its embedded labels are checked on load."""

    def __init__(self, model_path: Path, expected_labels: Sequence[str] | None = None):
        self.path = Path(model_path)
        self.session = open_session(self.path)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.labels: list[str] = json.loads(meta[META_PREFIX + "labels"]) if META_PREFIX + "labels" in meta else []
        if expected_labels is not None:
            check_labels(self.labels, expected_labels, str(self.path))
        self.max_length = int(meta.get(META_PREFIX + "max_length", "128"))
        self.windowing = windowing_from_metadata(meta)
        self.vocabulary_size: int | None = int(meta[META_PREFIX + "vocab_size"]) if META_PREFIX + "vocab_size" in meta else None
        self.input_names = [node.name for node in self.session.get_inputs()]

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return run_logits(self.session, batch)


def check_token_ids(batch: Mapping[str, np.ndarray], vocabulary_size: int | None) -> None:
    """Refuse ids outside `[0, vocabulary_size)` and masks/types outside {0, 1}: a Gather would wrap them silently."""
    ids = batch.get("input_ids")
    upper = vocabulary_size if vocabulary_size is not None else np.iinfo(np.int64).max
    if ids is not None and ids.size and (ids.min() < 0 or ids.max() >= upper):
        raise InputDataError(f"input_ids must lie in [0, {vocabulary_size}); got {int(ids.min())}..{int(ids.max())}")
    for name in ("attention_mask", "token_type_ids"):
        values = batch.get(name)
        if values is not None and values.size and (values.min() < 0 or values.max() > 1):
            raise InputDataError(f"{name} must be 0 or 1")


def windowing_from_metadata(meta: Mapping[str, str]) -> Windowing:
    """The windowing an export was judged with (embedded at export); exports from before windows read one window."""
    return Windowing(
        stride=int(meta.get(META_PREFIX + "window_stride", "0")),
        max_windows=int(meta.get(META_PREFIX + "max_windows", "1")),
    )


class ModerationPipeline:
    """The ensemble, in-process: what evaluation runs and what Triton must reproduce."""

    def __init__(self, model_path: Path, tokenizer_dir: Path, thresholds: ThresholdSet, batch_size: int = 64):
        self.classifier = OnnxClassifier(model_path, thresholds.labels)
        self.preprocessor = Preprocessor(
            tokenizer_dir, self.classifier.max_length, self.classifier.input_names, self.classifier.windowing
        )
        self.postprocessor = Postprocessor(thresholds)
        self.batch_size = batch_size
        self.model_sha256 = sha256_file(Path(model_path))

    def logits(self, texts: Sequence[str], contexts: Sequence[Context]) -> np.ndarray:
        """Per text, the maximum over its rows (windows x readings) of each category's logit."""
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            rows = self.preprocessor.encode(texts[start : start + self.batch_size], contexts[start : start + self.batch_size])
            row_logits = np.concatenate(
                [
                    self.classifier.logits(
                        {name: values[first : first + self.batch_size] for name, values in rows.inputs.items()}
                    )
                    for first in range(0, len(rows.owners), self.batch_size)
                ]
            )
            chunks.append(pool_rows(row_logits, rows.owners, len(rows.rows_per_text)))
        return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, len(self.postprocessor.thresholds.labels)), np.float32)

    def classify(
        self, texts: Sequence[str], contexts: Sequence[Context], enabled_optional: Sequence[str] | None = None
    ) -> Decisions:
        return self.postprocessor.decide(self.logits(texts, contexts), enabled_optional)
