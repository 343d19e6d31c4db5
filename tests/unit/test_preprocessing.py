from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiergate.errors import InputDataError
from tiergate.formatting import format_input
from tiergate.inference import Preprocessor
from tiergate.preprocessing import InputEncoder
from tiergate.records import Context

CONTEXTS = [Context(audience="general", surface="message"), Context(audience="adult", surface="bio")]
TEXTS = ["you are spam", "a much longer message that goes on and on and on and on and on and on and on"]


def test_padding_is_the_only_difference_between_the_policies(tiny_base: Path) -> None:
    fixed = InputEncoder.load(tiny_base, 32, "max_length")
    dynamic = InputEncoder.load(tiny_base, 32, "longest")
    padded, trimmed = fixed.encode(TEXTS, CONTEXTS), dynamic.encode(TEXTS, CONTEXTS)
    assert padded["input_ids"].shape == (2, 32) and padded["input_ids"].dtype == np.int64
    width = trimmed["input_ids"].shape[1]
    assert width < 32
    for name in padded:
        assert np.array_equal(padded[name][:, :width], trimmed[name])
    assert not padded["attention_mask"][:, width:].any()  # the extra columns are masked padding


def test_unpadded_token_ids_are_the_padded_rows_without_padding(tiny_base: Path) -> None:
    encoder = InputEncoder.load(tiny_base, 32, "longest")
    rows, batch = encoder.token_ids(TEXTS, CONTEXTS), encoder.encode(TEXTS, CONTEXTS)
    for index, ids in enumerate(rows["input_ids"]):
        assert batch["input_ids"][index, : len(ids)].tolist() == ids
    collated = encoder.collator()([{name: values[index] for name, values in rows.items()} for index in range(len(TEXTS))])
    assert np.array_equal(collated["input_ids"].numpy(), batch["input_ids"])


def test_inputs_go_through_format_input_and_truncation_is_reported(tiny_base: Path) -> None:
    encoder = InputEncoder.load(tiny_base, 16, "max_length", ["input_ids", "attention_mask"])
    assert encoder.format(TEXTS, CONTEXTS) == [format_input(t, c) for t, c in zip(TEXTS, CONTEXTS, strict=True)]
    batch, truncated = encoder.encode_with_truncation(TEXTS, CONTEXTS)
    assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].shape == (2, 16)
    assert truncated == [False, True]
    with pytest.raises(InputDataError, match="2 texts but 1 contexts"):
        encoder.encode(TEXTS, CONTEXTS[:1])


def test_serving_preprocessor_pads_to_max_length(tiny_base: Path) -> None:
    preprocessor = Preprocessor(tiny_base, 16, ["input_ids", "attention_mask", "token_type_ids"])
    batch, truncated = preprocessor.encode(TEXTS[:1], CONTEXTS[:1])
    expected = InputEncoder.load(tiny_base, 16, "max_length", ["input_ids", "attention_mask", "token_type_ids"])
    assert preprocessor.PADDING == "max_length" and truncated == [False]
    for name, values in expected.encode(TEXTS[:1], CONTEXTS[:1]).items():
        assert np.array_equal(batch[name], values)
