"""What the model reads of a user's text: the one normalisation step of the shared preprocessing.

Evasion works on the gap between what a reader sees and what a tokenizer gets: fullwidth or
mathematical letters, Cyrillic look-alikes, invisible characters, a right-to-left override,
letters spread apart. `normalize_for_model` closes that gap, in this order:

1. NFKC: fullwidth, mathematical, circled and other compatibility forms become plain letters;
2. right-to-left overrides are resolved to the order a reader sees, then every invisible format
   or control character (zero-width, soft hyphen, bidi controls, variation selectors) goes;
3. a word made only of Latin look-alikes from other scripts is folded to Latin (Unicode's
   confusables data); a word with any character that has no Latin look-alike is real text in
   its own script and stays as it is;
4. runs of single letters separated by single spaces are joined (`w a t c h  y o u r` reads
   as `watch your`: words in spaced-out text are separated by wider gaps);
5. a bracketed word (a context tag, `[SEP]`, `[link]`) is removed and any other `[` or `]` becomes `(` or `)`:
   user text can never spell a context tag (`formatting.context_prefix`) or a tokenizer special token,
   and a forged tag reads as if it had never been typed;
6. whitespace runs collapse to one space.

Callers keep the original text for logs and records; only the model input is normalised.
Leetspeak is not folded here, because digits inside words are also legitimate (`mp3`, `5pm`):
`leet_variant` gives a second reading that the preprocessing classifies beside the first.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from importlib.resources import files

RLO, LRO, PDF = "\u202e", "\u202d", "\u202c"
_BIDI_SPAN = re.compile(f"{RLO}([^{PDF}\n]*)({PDF}|$)", re.MULTILINE)
_VARIATION_SELECTORS = {chr(code) for code in range(0xFE00, 0xFE10)}
_KEEP_CONTROLS = {"\n", "\t", "\r"}  # whitespace: collapsed below, never removed
_WORD = re.compile(r"\S+")
_SPACED_RUN = re.compile(r"(?<!\S)\S(?: \S)+(?!\S)")  # single characters separated by single spaces
_MIN_SPACED_LETTERS = 3  # a run of two is joined only between wide gaps (`s o` in `w a t c h   s o`)
_WHITESPACE = re.compile(r"\s+")
_TAG_BRACKETS = str.maketrans({"[": "(", "]": ")"})
_BRACKETED_WORD = re.compile(r"\[\s*[A-Za-z_]{1,24}\s*\]")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_LEET_TOKEN = re.compile(r"[0-9A-Za-z@$]+")
_LETTER = re.compile(r"[A-Za-z]")
_LEET_CHARS = frozenset("013457@$")


# Look-alikes Unicode's table lacks or maps to `l` (found by the evasion suite's own Cyrillic/Greek table).
LOOKALIKES_MISSING_FROM_UNICODE = {"κ": "k", "к": "k", "χ": "x", "ʟ": "l", "Ι": "I", "І": "I"}


@cache
def latin_lookalikes() -> dict[str, str]:
    """Non-ASCII characters that look like one ASCII letter or digit, from Unicode's confusables data.

    The `confusable_homoglyphs` package ships Unicode's confusables.txt as JSON; only entries whose
    look-alike is a single ASCII letter or digit are kept.
    """
    data = json.loads(files("confusable_homoglyphs").joinpath("confusables.json").read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for character, entries in data.items():
        if len(character) != 1 or character.isascii():
            continue
        for entry in entries:
            target = entry["c"]
            if len(target) == 1 and target.isascii() and target.isalnum():
                table[character] = target
                break
    return table | LOOKALIKES_MISSING_FROM_UNICODE


def resolve_overrides(text: str) -> str:
    """Text between a right-to-left override and its pop (or the line's end) in the order it is displayed."""
    return _BIDI_SPAN.sub(lambda match: match.group(1)[::-1], text)


def drop_invisible(text: str) -> str:
    """Remove format (Cf) and control (Cc) characters and variation selectors; whitespace stays."""
    return "".join(
        character
        for character in text
        if character in _KEEP_CONTROLS
        or (unicodedata.category(character) not in ("Cf", "Cc") and character not in _VARIATION_SELECTORS)
    )


def fold_lookalikes(text: str) -> str:
    """Fold the words that are disguised Latin: every non-ASCII character in them has a Latin look-alike.

    A word that mixes ASCII letters with look-alikes is always folded. A word made only of
    look-alikes (Russian `как`, or a disguised `уоu`) is folded only when the text around it is
    mostly Latin, i.e. it has at least as many ASCII letters as letters without a Latin look-alike.
    """
    if text.isascii():
        return text
    table = latin_lookalikes()
    ascii_letters = sum(ch.isascii() and ch.isalpha() for ch in text)
    foreign_letters = sum(ch.isalpha() and not ch.isascii() and ch not in table for ch in text)
    latin_text = ascii_letters >= foreign_letters

    def fold(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.isascii() or any(not ch.isascii() and ch not in table for ch in word):
            return word
        if not latin_text and not any(ch.isascii() and ch.isalpha() for ch in word):
            return word
        return "".join(table.get(ch, ch) for ch in word)

    return _WORD.sub(fold, text)


def join_spaced_letters(text: str) -> str:
    """`w a t c h   y o u r` -> `watch your`: single characters one space apart are one word.

    A run of three or more is joined; a run of two only between wider gaps (or the text's ends),
    so ordinary text such as `a b and c d` stays as it is.
    """

    def wide_gap(start: int, end: int) -> bool:
        before = start == 0 or (text[max(0, start - 2) : start].isspace() and start >= 2)
        after = end == len(text) or (text[end : end + 2].isspace() and end + 2 <= len(text))
        return before and after

    def join(match: re.Match[str]) -> str:
        run = match.group(0)
        letters = (len(run) + 1) // 2
        if letters >= _MIN_SPACED_LETTERS or wide_gap(match.start(), match.end()):
            return run.replace(" ", "")
        return run

    return _SPACED_RUN.sub(join, text)


def normalize_for_model(text: str) -> str:
    """The text the model reads (see the module docstring for each step and why)."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii() or any(not ch.isprintable() for ch in text):
        text = drop_invisible(resolve_overrides(text))
        text = fold_lookalikes(unicodedata.normalize("NFKC", text))
    text = join_spaced_letters(text)
    text = _BRACKETED_WORD.sub(" ", text).translate(_TAG_BRACKETS)
    return _WHITESPACE.sub(" ", text).strip()


def leet_variant(normalized: str) -> str | None:
    """`1 kn0w wh3re y0u l1ve` -> `i know where you live`; None when no word mixes letters with leet digits.

    Applied to already normalised text. Only a text with at least one word that mixes letters
    and leet characters gets a second reading; in it every word of letters, digits, `@` and `$`
    is folded (`5335` -> `sees`), while the first reading keeps numbers (`555 0100`) as they are.
    """
    words = _LEET_TOKEN.findall(normalized)
    if not any(_LETTER.search(word) and not _LEET_CHARS.isdisjoint(word) for word in words):
        return None
    return _LEET_TOKEN.sub(lambda match: match.group(0).translate(_LEET), normalized)
