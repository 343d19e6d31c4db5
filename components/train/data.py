"""Records → model inputs through the one preprocessing path; the labels through the taxonomy order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tiergate.labels import encode_targets
from tiergate.preprocessing import InputEncoder
from tiergate.records import Record


class EncodedDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Tokenised once, unpadded; `encoder.collator()` pads each batch by the encoder's policy."""

    def __init__(self, records: Sequence[Record], encoder: InputEncoder, labels: Sequence[str]):
        self.encodings = encoder.token_ids([record.text for record in records], [record.context for record in records])
        self.labels = [encode_targets(record, labels) for record in records]  # unknown cells: UNKNOWN_TARGET

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.labels[index]
        return item
