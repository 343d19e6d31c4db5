"""The names of every file and folder that travels between steps: one vocabulary, one place.

A step that writes an artifact and the step that reads it use these names, never string
literals, so renaming a file cannot leave a consumer reading a stale or missing one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

# Datasets (generate, import, merge)
DATASET_MANIFEST: Final = "manifest.json"
RECORDS: Final = "records.jsonl"
GENERATION_REPORT: Final = "report.json"
TRAIN_SPLIT: Final = "train.jsonl"
VAL_SPLIT: Final = "val.jsonl"
TEST_SPLIT: Final = "test.jsonl"
DATASET_REPORT: Final = "report.json"  # merge's dataset report (same name as a generated dataset's)
DATASET_REPORT_MD: Final = "report.md"
QUARANTINE: Final = "quarantine.jsonl"


def phase_file(phase: str) -> str:
    """The curriculum subset a training phase reads, e.g. `phase1.jsonl`."""
    return f"{phase}.jsonl"


# Training
CHECKPOINT_INFO: Final = "tiergate_checkpoint.json"
TRAIN_METRICS: Final = "metrics.json"

# Export: one file per ONNX variant; `model.json` describes inputs and max length.
ONNX_FILES: Final = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx"}
EXPORT_INFO: Final = "model.json"
TOKENIZER_DIR: Final = "tokenizer"
TOKENIZER_FILE: Final = "tokenizer.json"
EXPORT_REPORT: Final = "export_report.json"
EXPORT_REPORT_MD: Final = "export_report.md"
EXPORT_MANIFEST: Final = "export_manifest.json"  # written last: its presence means the export finished

# Evaluation
GATE_FILE: Final = "gate.json"
THRESHOLDS_FILE: Final = "thresholds.json"
EVAL_METRICS: Final = "metrics.json"
REGRESSION_RESULTS: Final = "regression.json"
REPORT_HTML: Final = "report.html"
REPORT_MD: Final = "report.md"
KFP_METRICS: Final = "kfp_metrics.json"  # flat scalars for the KFP Metrics artifact

# Triton model repository: <model>/config.pbtxt and <model>/<version>/<payload>
REPOSITORY_MANIFEST: Final = "repository.json"
MODEL_CONFIG: Final = "config.pbtxt"
MODEL_VERSION_DIR: Final = "1"
PYTHON_MODEL: Final = "model.py"
TOKENIZER_MODEL: Final = "tokenizer"
CLASSIFIER_MODEL: Final = "classifier"
POSTPROCESS_MODEL: Final = "postprocess"
CLASSIFIER_FILE: Final = "model.onnx"
LABELS_FILE: Final = "labels.txt"
# Object store: <store>/<model>/<version>/<digest>/… is published once <model>/<version>/published.json names it.
PUBLISHED_MARKER: Final = "published.json"


class RepositoryLayout:
    """Where each served file sits inside a Triton model repository (packaging, screening and serving agree)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def version_dir(self, model: str) -> Path:
        return self.root / model / MODEL_VERSION_DIR

    def config(self, model: str) -> Path:
        return self.root / model / MODEL_CONFIG

    @property
    def manifest(self) -> Path:
        return self.root / REPOSITORY_MANIFEST

    @property
    def classifier_onnx(self) -> Path:
        return self.version_dir(CLASSIFIER_MODEL) / CLASSIFIER_FILE

    @property
    def tokenizer_dir(self) -> Path:
        return self.version_dir(TOKENIZER_MODEL) / TOKENIZER_DIR

    @property
    def thresholds(self) -> Path:
        return self.version_dir(POSTPROCESS_MODEL) / THRESHOLDS_FILE

    @property
    def gate(self) -> Path:
        """The gate record travels inside the repository, so every copy can be re-verified on its own."""
        return self.root / GATE_FILE

    @property
    def labels(self) -> Path:
        return self.root / POSTPROCESS_MODEL / LABELS_FILE
