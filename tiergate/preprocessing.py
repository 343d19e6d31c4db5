"""Texts + contexts → model inputs: the one preprocessing path for training, export, evaluation and serving.

`format_input` builds every model input (the only prefix builder), the checkpoint's fast tokenizer
truncates it to `max_length`, and padding is a named policy each caller states, never a tokenizer
default it inherits. Importable without torch: the Triton python backend runs this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tiergate.errors import InputDataError
from tiergate.formatting import format_input
from tiergate.records import Context

Padding = Literal["max_length", "longest"]
"""How a batch is padded.

`max_length`: every batch is `[batch, max_length]`. Serving uses it because Triton's dynamic batcher
only concatenates requests of equal shape, and evaluation uses it to feed the model what the server
feeds it. `longest`: a batch is padded to its longest text (fewer pad tokens; padding is masked, so
the logits are those of `max_length`). Training and the export parity check use it.
"""


class InputEncoder:
    """`format_input` + a fast tokenizer, truncated to `max_length`, padded by a named `Padding` policy."""

    def __init__(self, tokenizer: Any, max_length: int, padding: Padding, input_names: Sequence[str] | None = None):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.padding: Padding = padding
        self.input_names = None if input_names is None else list(input_names)

    @classmethod
    def load(
        cls, tokenizer_dir: Path | str, max_length: int, padding: Padding, input_names: Sequence[str] | None = None
    ) -> InputEncoder:
        """The encoder for the tokenizer saved in `tokenizer_dir` (a checkpoint or an export)."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(tokenizer_dir)), max_length, padding, input_names)

    def format(self, texts: Sequence[str], contexts: Sequence[Context]) -> list[str]:
        """The model input strings, one per (text, context) pair."""
        if len(texts) != len(contexts):
            raise InputDataError(f"{len(texts)} texts but {len(contexts)} contexts")
        return [format_input(text, context) for text, context in zip(texts, contexts, strict=True)]

    def encode(self, texts: Sequence[str], contexts: Sequence[Context]) -> dict[str, np.ndarray]:
        """One padded int64 batch of model inputs (only `input_names`, when given)."""
        return self._padded(self.format(texts, contexts))

    def encode_with_truncation(
        self, texts: Sequence[str], contexts: Sequence[Context]
    ) -> tuple[dict[str, np.ndarray], list[bool]]:
        """`encode`, plus per text whether it was cut to `max_length` tokens (so callers can report it)."""
        formatted = self.format(texts, contexts)
        full = self.tokenizer(formatted, truncation=False)["input_ids"]
        return self._padded(formatted), [len(ids) > self.max_length for ids in full]

    def token_ids(self, texts: Sequence[str], contexts: Sequence[Context]) -> dict[str, list[list[int]]]:
        """Truncated, unpadded inputs, for a dataset tokenised once and padded per batch by `collator()`."""
        encoded = self.tokenizer(self.format(texts, contexts), truncation=True, max_length=self.max_length)
        return {name: encoded[name] for name in self._names(encoded)}

    def collator(self) -> Any:
        """A Trainer data collator that pads each batch of `token_ids` rows by this encoder's policy."""
        from transformers import DataCollatorWithPadding

        if self.padding == "max_length":
            return DataCollatorWithPadding(self.tokenizer, padding="max_length", max_length=self.max_length)
        return DataCollatorWithPadding(self.tokenizer, padding="longest")

    def _padded(self, formatted: list[str]) -> dict[str, np.ndarray]:
        encoded = self.tokenizer(
            formatted, truncation=True, max_length=self.max_length, padding=self.padding, return_tensors="np"
        )
        return {name: encoded[name].astype(np.int64) for name in self._names(encoded)}

    def _names(self, encoded: Any) -> list[str]:
        return list(encoded.keys()) if self.input_names is None else self.input_names
