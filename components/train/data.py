"""Records → model inputs. The text goes through `format_input`, the labels through the taxonomy order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tiergate.formatting import format_input
from tiergate.labels import encode_labels
from tiergate.records import Record


class EncodedDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Tokenised once, padded per batch by the collator (short texts train fast)."""

    def __init__(self, records: Sequence[Record], tokenizer: Any, labels: Sequence[str], max_length: int):
        texts = [format_input(record.text, record.context) for record in records]
        self.encodings = tokenizer(texts, truncation=True, max_length=max_length)
        self.labels = [encode_labels(record.labels, labels) for record in records]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.labels[index]
        return item
