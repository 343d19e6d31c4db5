"""Checkpoint metadata: what a trained model is, for which labels, from what data.

Every checkpoint carries the ordered labels and taxonomy hash; loading one for a
different label list fails loudly (three models once trained with a different order: docs/lessons.md#label-order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tiergate.artifacts import CHECKPOINT_INFO
from tiergate.hashing import write_json
from tiergate.labels import load_labelled_json
from tiergate.taxonomy import Taxonomy


class CheckpointInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[str]
    taxonomy_sha256: str
    base_model: str
    max_length: int
    phase: str
    parent: str | None = None  # the checkpoint this phase warm-started from
    dataset_sha256: dict[str, str] = Field(default_factory=dict)
    pos_weight: dict[str, float] = Field(default_factory=dict)
    epochs: list[dict[str, Any]] = Field(default_factory=list)
    best: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    device: str = "cpu"


def write_checkpoint_info(directory: Path, info: CheckpointInfo) -> None:
    write_json(Path(directory) / CHECKPOINT_INFO, info.model_dump(mode="json"))


def load_checkpoint_info(directory: Path, taxonomy: Taxonomy) -> CheckpointInfo:
    """Read a checkpoint's metadata and refuse it unless its labels are the taxonomy's, in order."""
    return load_labelled_json(Path(directory) / CHECKPOINT_INFO, CheckpointInfo, taxonomy, "checkpoint")
