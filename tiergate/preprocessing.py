"""Texts + contexts → model inputs: the one preprocessing path for training, export, evaluation and serving.

Every model input is the context prefix (`formatting.context_prefix`) followed by a window of the normalised
text (`tiergate.formatting`, `tiergate.normalization`), wrapped in the tokenizer's special tokens.
A text longer than one window is read in overlapping windows, each carrying the prefix, and
a text with a second reading (look-alikes folded, leetspeak read) is read twice: every such model input is a *row*, and a text's
scores are the per-category maximum over its rows (`pool_rows`), so a threat anywhere in an
accepted text is seen. Training reads the first window of the first reading only.

Padding is a named policy each caller states, never a tokenizer default it inherits.
Importable without torch: the Triton python backend runs this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tiergate.errors import InputDataError
from tiergate.formatting import context_prefix, format_input, model_readings
from tiergate.records import Context

PREPROCESSING_VERSION = "4"
"""Recorded in every export and checked by the served tokenizer model: the rules here (normalisation,
windows, readings) decide what the model reads, so a repository is only served by the code it was
judged with. Bump it whenever a change here alters any model input."""

Padding = Literal["max_length", "longest"]
"""How a batch is padded.

`max_length`: every batch is `[rows, max_length]`. Serving uses it because Triton's dynamic batcher
only concatenates requests of equal shape, and evaluation uses it to feed the model what the server
feeds it. `longest`: a batch is padded to its longest row (fewer pad tokens; padding is masked, so
the logits are those of `max_length`). Training and the export parity check use it.
"""


@dataclass(frozen=True)
class Windowing:
    """How a long text is read: windows of the model's length, `stride` tokens shared by neighbours."""

    stride: int = 16
    max_windows: int = 1  # 1: only the first window (plain truncation), what exports before windows did

    def __post_init__(self) -> None:
        if self.stride < 0 or self.max_windows < 1:
            raise InputDataError(f"windowing needs stride >= 0 and max_windows >= 1, got {self}")


MAX_READINGS = 2  # the normalised text and, when it differs, its every-disguise-undone reading (formatting.model_readings)


@dataclass
class RowBatch:
    """Model inputs for a batch of texts: one row per window of each reading."""

    inputs: dict[str, np.ndarray]  # int64 [rows, width]
    owners: np.ndarray  # int32 [rows]: the index of the text each row reads
    rows_per_text: np.ndarray  # int32 [texts]: how many rows (windows x readings) each text was read in
    truncated: np.ndarray  # bool [texts]: part of the text lay beyond the last window and was not read


def pool_rows(row_logits: np.ndarray, owners: np.ndarray, texts: int) -> np.ndarray:
    """Per text, the per-category maximum over its rows' logits (max of logits = max of sigmoid scores)."""
    owners = np.asarray(owners).reshape(-1).astype(np.int64)
    if row_logits.ndim != 2 or len(owners) != len(row_logits):
        raise InputDataError(f"{len(owners)} row owners for logits of shape {row_logits.shape}")
    if (owners.size and (owners.min() < 0 or owners.max() >= texts)) or len(np.unique(owners)) != texts:
        raise InputDataError(f"row owners must name each of the {texts} texts and nothing else")
    pooled = np.full((texts, row_logits.shape[1]), -np.inf, dtype=row_logits.dtype)
    np.maximum.at(pooled, owners, row_logits)
    return pooled


class InputEncoder:
    """Prefix + normalised text windows through a fast tokenizer, padded by a named `Padding` policy."""

    def __init__(
        self,
        tokenizer: Any,
        max_length: int,
        padding: Padding,
        input_names: Sequence[str] | None = None,
        windowing: Windowing | None = None,
    ):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.padding: Padding = padding
        self.input_names = None if input_names is None else list(input_names)
        self.windowing = windowing or Windowing()
        self._prefix_ids: dict[str, list[int]] = {}

    @classmethod
    def load(
        cls,
        tokenizer_dir: Path | str,
        max_length: int,
        padding: Padding,
        input_names: Sequence[str] | None = None,
        windowing: Windowing | None = None,
    ) -> InputEncoder:
        """The encoder for the tokenizer saved in `tokenizer_dir` (a checkpoint or an export)."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(tokenizer_dir)), max_length, padding, input_names, windowing)

    # ---- the text, as the model reads it ----------------------------------------------------------

    def format(self, texts: Sequence[str], contexts: Sequence[Context]) -> list[str]:
        """The model input strings (first reading, untruncated), one per (text, context) pair."""
        _check_pairs(texts, contexts)
        return [format_input(text, context) for text, context in zip(texts, contexts, strict=True)]

    @cached_property
    def _template(self) -> tuple[list[int], list[int], list[int], list[int], int]:
        """The tokenizer's special tokens around one sequence: head ids, tail ids, their type ids, the body's type id.

        Read off the tokenizer itself (encode one word with and without special tokens), so any
        single-sequence template works, not only BERT's `[CLS] ... [SEP]`.
        """
        bare = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a", add_special_tokens=True, return_token_type_ids=True)
        ids, types = full["input_ids"], full.get("token_type_ids") or [0] * len(full["input_ids"])
        start = next(i for i in range(len(ids) - len(bare) + 1) if ids[i : i + len(bare)] == bare)
        end = start + len(bare)
        return ids[:start], ids[end:], types[:start], types[end:], types[start]

    def _prefix(self, context: Context) -> list[int]:
        prefix = context_prefix(context)
        if prefix not in self._prefix_ids:
            self._prefix_ids[prefix] = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        return self._prefix_ids[prefix]

    def _span(self, prefix: list[int]) -> int:
        head, tail, *_ = self._template
        span = self.max_length - len(head) - len(tail) - len(prefix)
        if span < 1:
            raise InputDataError(f"max_length {self.max_length} leaves no room for text after the context prefix")
        return span

    def _windows(self, prefix: list[int], text_ids: list[int], limit: int) -> tuple[list[list[int]], bool]:
        """Token windows of `text_ids` (at most `limit`), each `prefix + window`, and whether text was left unread."""
        span = self._span(prefix)
        step = max(1, span - self.windowing.stride)
        starts = [0]
        while starts[-1] + span < len(text_ids) and len(starts) < limit:
            starts.append(starts[-1] + step)
        unread = starts[-1] + span < len(text_ids)
        return [prefix + text_ids[start : start + span] for start in starts], unread

    def _row(self, body: list[int]) -> dict[str, list[int]]:
        head, tail, head_types, tail_types, body_type = self._template
        ids = head + body + tail
        return {
            "input_ids": ids,
            "token_type_ids": head_types + [body_type] * len(body) + tail_types,
            "attention_mask": [1] * len(ids),
        }

    def rows(
        self, texts: Sequence[str], contexts: Sequence[Context], first_only: bool = False
    ) -> tuple[list[dict[str, list[int]]], list[int], list[bool]]:
        """Unpadded rows, each row's text index, and per text whether part of it was left unread."""
        _check_pairs(texts, contexts)
        readings = [model_readings(text)[:1] if first_only else model_readings(text) for text in texts]
        flat = [reading for text_readings in readings for reading in text_readings]
        token_ids = self.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        limit = 1 if first_only else self.windowing.max_windows
        rows: list[dict[str, list[int]]] = []
        owners: list[int] = []
        unread_any = [False] * len(texts)
        position = 0
        for index, (context, text_readings) in enumerate(zip(contexts, readings, strict=True)):
            prefix = self._prefix(context)
            for _ in text_readings:
                windows, unread = self._windows(prefix, token_ids[position], limit)
                position += 1
                rows.extend(self._row(window) for window in windows)
                owners.extend([index] * len(windows))
                unread_any[index] = unread_any[index] or unread
        return rows, owners, unread_any

    # ---- batches ------------------------------------------------------------------------------------

    def encode(self, texts: Sequence[str], contexts: Sequence[Context]) -> dict[str, np.ndarray]:
        """One padded int64 batch of the first window of each text (only `input_names`, when given)."""
        rows, _, _ = self.rows(texts, contexts, first_only=True)
        return self._padded(rows)

    def encode_rows(self, texts: Sequence[str], contexts: Sequence[Context]) -> RowBatch:
        """Every window of every reading of each text, padded, with the bookkeeping to pool them back per text."""
        rows, owners, unread = self.rows(texts, contexts)
        return RowBatch(
            self._padded(rows),
            np.array(owners, dtype=np.int32),
            np.bincount(np.array(owners, dtype=np.int64), minlength=len(texts)).astype(np.int32),
            np.array(unread, dtype=bool),
        )

    def token_ids(self, texts: Sequence[str], contexts: Sequence[Context]) -> dict[str, list[list[int]]]:
        """First windows, unpadded: a dataset tokenised once and padded per batch by `collator()`."""
        rows, _, _ = self.rows(texts, contexts, first_only=True)
        return {name: [row[name] for row in rows] for name in self._names(rows)}

    def collator(self) -> Any:
        """A Trainer data collator that pads each batch of `token_ids` rows by this encoder's policy."""
        from transformers import DataCollatorWithPadding

        if self.padding == "max_length":
            return DataCollatorWithPadding(self.tokenizer, padding="max_length", max_length=self.max_length)
        return DataCollatorWithPadding(self.tokenizer, padding="longest")

    def _padded(self, rows: list[dict[str, list[int]]]) -> dict[str, np.ndarray]:
        width = self.max_length if self.padding == "max_length" else max((len(row["input_ids"]) for row in rows), default=0)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        pad_values = {"input_ids": pad_id, "token_type_ids": 0, "attention_mask": 0}
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        batch = {}
        for name in self._names(rows):
            array = np.full((len(rows), width), pad_values[name], dtype=np.int64)
            for index, row in enumerate(rows):
                values = row[name]
                if left:
                    array[index, width - len(values) :] = values
                else:
                    array[index, : len(values)] = values
            batch[name] = array
        return batch

    def _names(self, rows: list[dict[str, list[int]]]) -> list[str]:
        if self.input_names is not None:
            return self.input_names
        return [name for name in ("input_ids", "token_type_ids", "attention_mask") if name in self.tokenizer.model_input_names]


def _check_pairs(texts: Sequence[str], contexts: Sequence[Context]) -> None:
    if len(texts) != len(contexts):
        raise InputDataError(f"{len(texts)} texts but {len(contexts)} contexts")
