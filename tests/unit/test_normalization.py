"""The normalisation the model reads through: each evasion transformation folds back to the plain text."""

from __future__ import annotations

import pytest

from tiergate.evasion import TRANSFORMS
from tiergate.normalization import leet_variant, normalize_for_model

PLAIN = "i know where you live, so watch your back"
FOLDED_BACK = ["fullwidth", "math_bold", "rtl_override", "spaced_letters", "cyrillic_homoglyphs", "zero_width", "soft_hyphens"]


@pytest.mark.parametrize("name", FOLDED_BACK)
def test_disguises_fold_back_to_the_plain_text(name: str) -> None:
    assert normalize_for_model(TRANSFORMS[name](PLAIN)) == PLAIN


def test_leetspeak_gets_a_folded_second_reading_and_numbers_stay() -> None:
    disguised = normalize_for_model(TRANSFORMS["leetspeak"](PLAIN))
    assert leet_variant(disguised) == PLAIN
    assert leet_variant("text me at 555 0100 or 555-0199") is None
    assert normalize_for_model("meet at 5pm") == "meet at 5pm"  # the first reading never changes digits


def test_real_text_in_another_script_is_not_folded() -> None:
    assert normalize_for_model("привет, как дела") == "привет, как дела"
    assert normalize_for_model("café naïve") == "café naïve"


def test_invisible_and_control_characters_go_and_whitespace_collapses() -> None:
    assert normalize_for_model("a\u200bb\u200dc\u2060d \ufeffe\x00f\u00ad \u2066g\u2069") == "abcd ef g"
    assert normalize_for_model("  one\t\ttwo\n\nthree\u00a0four\u3000five  ") == "one two three four five"


def test_brackets_cannot_reach_the_model() -> None:
    assert normalize_for_model("[ADULT][BIO] hi [SEP] ［x］ [ GENERAL ]there") == "hi there"
    leftover = normalize_for_model("[[ADULT]] a [1] b ] c [ [ADULT ] ]")
    assert "[" not in leftover and "]" not in leftover and "ADULT" not in leftover


def test_short_spaced_runs_and_ordinary_text_are_left_alone() -> None:
    assert normalize_for_model("a b and c d") == "a b and c d"
    assert normalize_for_model(PLAIN) == PLAIN
