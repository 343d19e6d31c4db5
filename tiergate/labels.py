"""Label vectors exist only at the model boundary; everywhere else labels are names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from tiergate.errors import InputDataError, LabelMismatchError
from tiergate.hashing import read_json
from tiergate.records import Record
from tiergate.taxonomy import Taxonomy, taxonomy_sha256


def encode_labels(names: Iterable[str], labels: Sequence[str]) -> list[float]:
    """Multi-hot vector in `labels` order; an unknown name is an error, never dropped."""
    index = {name: position for position, name in enumerate(labels)}
    vector = [0.0] * len(labels)
    for name in names:
        if name not in index:
            raise InputDataError(f"unknown label {name!r}; not in the taxonomy")
        vector[index[name]] = 1.0
    return vector


UNKNOWN_TARGET = -1.0  # a training target the loss masks out: the record's source did not label that category


def encode_targets(record: Record, labels: Sequence[str]) -> list[float]:
    """The training target: 1 positive, 0 negative, UNKNOWN_TARGET where the record's label is unknown."""
    vector = encode_labels(record.labels, labels)
    index = {name: position for position, name in enumerate(labels)}
    for name in record.unknown:
        if name not in index:
            raise InputDataError(f"unknown label {name!r}; not in the taxonomy")
        vector[index[name]] = UNKNOWN_TARGET
    return vector


def targets_and_known(records: Sequence[Record], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(positive, known) boolean matrices, rows = records, columns in `labels` order.

    Every metric and threshold search reads both: a cell whose label is unknown counts as
    neither a positive nor a negative."""
    encoded = np.array([encode_targets(record, labels) for record in records], dtype=float).reshape(-1, len(labels))
    return encoded > 0.5, encoded >= 0


def check_labels(artifact_labels: Sequence[str], expected: Sequence[str], artifact: str) -> None:
    """Refuse an artifact whose ordered label list differs from the taxonomy's (log: v4–v6)."""
    if list(artifact_labels) == list(expected):
        return
    if sorted(artifact_labels) == sorted(expected):
        first = next(i for i, (a, b) in enumerate(zip(artifact_labels, expected, strict=False)) if a != b)
        raise LabelMismatchError(
            f"{artifact}: label ORDER differs from the taxonomy at position {first} "
            f"({artifact_labels[first]!r} vs {expected[first]!r}); refusing to use it"
        )
    missing = sorted(set(expected) - set(artifact_labels))
    extra = sorted(set(artifact_labels) - set(expected))
    raise LabelMismatchError(
        f"{artifact}: labels differ from the taxonomy (missing {missing}, unexpected {extra}); "
        f"artifact hash {taxonomy_sha256(list(artifact_labels))[:12]} vs taxonomy {taxonomy_sha256(list(expected))[:12]}"
    )


class _Labelled(Protocol):
    labels: list[str]
    taxonomy_sha256: str


Model = TypeVar("Model", bound=BaseModel)


def load_labelled_json(path: Path, model: type[Model], taxonomy: Taxonomy, what: str) -> Model:
    """Read a JSON artifact that carries `labels` + `taxonomy_sha256`, and refuse it for another taxonomy."""
    if not path.is_file():
        raise InputDataError(f"{path.parent}: no {path.name}; not a tiergate {what}")
    try:
        loaded = model.model_validate(read_json(path))
    except (ValidationError, ValueError) as error:
        raise InputDataError(f"{path}: invalid {what} metadata: {error}") from None
    labelled: _Labelled = loaded  # type: ignore[assignment]
    check_labels(labelled.labels, taxonomy.labels, str(path))
    if labelled.taxonomy_sha256 != taxonomy.labels_sha256:
        raise InputDataError(f"{path}: taxonomy_sha256 {labelled.taxonomy_sha256[:12]} != {taxonomy.labels_sha256[:12]}")
    return loaded
