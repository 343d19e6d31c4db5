"""The normalisation the model reads through: each evasion transformation folds back to the plain text."""

from __future__ import annotations

import pytest

from tiergate.evasion import TRANSFORMS
from tiergate.normalization import leet_variant, normalize_for_model, second_reading

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


def test_brackets_cannot_reach_the_model_and_words_in_them_stay() -> None:
    assert normalize_for_model("[ADULT][BIO] hi [SEP] ［x］") == "ADULT BIO hi SEP x"
    assert normalize_for_model("[i] [know] [where] [you] [live]") == "i know where you live"  # bracketing hides nothing
    leftover = normalize_for_model("[[ADULT]] a [1] b ] c [ [ADULT ] ]")
    assert "[" not in leftover and "]" not in leftover


@pytest.mark.parametrize(
    "disguised",
    [
        "\u202e\u202d\u202c" + PLAIN[::-1] + "\u202c",  # an empty override pair before the reversed text
        "\u202e" + PLAIN[::-1],  # no closing pop
        "\u202b\u202e" + PLAIN[::-1] + "\u202c\u202c",  # override inside an embedding
    ],
)
def test_right_to_left_tricks_read_in_display_order(disguised: str) -> None:
    assert normalize_for_model(disguised) == PLAIN


@pytest.mark.parametrize(
    ("disguised", "reads"),
    [
        ("i will kill\U0001f52a you", "i will kill \U0001f52a you"),  # an emoji glued to a word no longer hides it
        ("k\U0001f52ai\U0001f52al\U0001f52al you", "kill you"),
        ("k.i.l.l you", "kill you"),
        ("k_i_l_l you", "kill you"),
        ("k-i-l-l you", "kill you"),
        ("\u1d0b\u026a\u029f\u029f you", "kill you"),  # small capitals
        ("\U0001f1f0\U0001f1ee\U0001f1f1\U0001f1f1 you", "kill you"),  # regional indicators
        ("ki\u3164ll yo\u2800u", "kill you"),  # blank letters (Hangul filler, braille blank)
        ("k\u20deill you", "kill you"),  # an enclosing mark
        ("thumbs \U0001f44d\U0001f3fd up", "thumbs \U0001f44d up"),  # skin tone modifier
    ],
)
def test_more_disguises_fold_back(disguised: str, reads: str) -> None:
    assert normalize_for_model(disguised) == reads


def test_padding_cannot_switch_the_look_alike_fold_off() -> None:
    """All-look-alike words beside foreign text: the second reading folds them whatever surrounds them."""
    disguised = "\u0456 \u03ba\u0578\u043e\u051d \u0443\u043e\u057d " + "\u4f60\u597d\u4e16\u754c" * 10
    normalized = normalize_for_model(disguised)
    assert second_reading(normalized) is not None and second_reading(normalized).startswith("i know you")


def test_ordinary_punctuation_and_numbers_are_not_joined() -> None:
    assert normalize_for_model("e.g. a-b test 1-2-3 and 555-0100") == "e.g. a-b test 1-2-3 and 555-0100"


def test_short_spaced_runs_and_ordinary_text_are_left_alone() -> None:
    assert normalize_for_model("a b and c d") == "a b and c d"
    assert normalize_for_model(PLAIN) == PLAIN
