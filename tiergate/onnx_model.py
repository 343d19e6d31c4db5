"""Exported ONNX models as tiergate reads them: one session set-up, one way to get logits, the label check.

Export, evaluation, the local Triton classifier and the benchmark all open and run the model
through here, so a provider or input-feeding change cannot reach one path and miss another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tiergate.errors import InputDataError
from tiergate.labels import check_labels
from tiergate.taxonomy import Taxonomy

META_PREFIX = "tiergate."


def open_session(path: Path) -> Any:
    """An onnxruntime session on the GPU when this onnxruntime has CUDA, else the CPU; warnings only."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=providers)


def run_logits(session: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
    """The `logits` output (float32) for a batch, fed by the session's own input names as int64."""
    names = [node.name for node in session.get_inputs()]
    result: Any = session.run(["logits"], {name: batch[name].astype(np.int64) for name in names})[0]
    return np.asarray(result, dtype=np.float32)


def read_metadata(path: Path) -> dict[str, str]:
    """tiergate's metadata embedded in an ONNX file (labels, max length, ...), without loading the weights' data."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {
        entry.key.removeprefix(META_PREFIX): entry.value for entry in model.metadata_props if entry.key.startswith(META_PREFIX)
    }


def check_onnx_labels(path: Path, taxonomy: Taxonomy) -> dict[str, str]:
    """Refuse an ONNX model whose embedded labels are not the taxonomy's, in order."""
    metadata = read_metadata(path)
    if "labels" not in metadata:
        raise InputDataError(f"{path}: no tiergate label metadata; not a tiergate model")
    check_labels(json.loads(metadata["labels"]), taxonomy.labels, str(path))
    return metadata
