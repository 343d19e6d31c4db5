"""Stable splits: a record's split is a pure function of its (origin) text and the salt.

Adding or removing other data can never move an example (docs/lessons.md#split-stability: a dataset-size
dependent shuffle made every cross-experiment comparison meaningless).
"""

from __future__ import annotations

from collections.abc import Sequence

from tiergate.artifacts import TEST_SPLIT, TRAIN_SPLIT, VAL_SPLIT
from tiergate.hashing import sha256_text
from tiergate.profiles import SplitSettings
from tiergate.records import Record, split_key

SPLITS = ("train", "val", "test")
SPLIT_FILES = {"train": TRAIN_SPLIT, "val": VAL_SPLIT, "test": TEST_SPLIT}


def split_of(key: str, settings: SplitSettings) -> str:
    position = int(sha256_text(f"{settings.salt}\x1f{key}")[:16], 16) / float(1 << 64)
    if position < settings.train:
        return "train"
    if position < settings.train + settings.val:
        return "val"
    return "test"


def assign_splits(records: Sequence[Record], settings: SplitSettings) -> dict[str, list[Record]]:
    splits: dict[str, list[Record]] = {name: [] for name in SPLITS}
    for record in records:
        splits[split_of(split_key(record), settings)].append(record)
    return splits
