"""What the model reads of a user's text: the one normalisation step of the shared preprocessing.

Evasion works on the gap between what a reader sees and what a tokenizer gets: fullwidth or
mathematical letters, Cyrillic look-alikes, invisible characters, a right-to-left override,
letters spread apart. `normalize_for_model` closes that gap, in this order:

1. NFKC: fullwidth, mathematical, circled and other compatibility forms become plain letters;
2. bidi overrides and embeddings are resolved to the order a reader sees (`display_order`), then
   every invisible character goes: format and control characters, variation selectors,
   enclosing marks, emoji skin-tone modifiers and the "blank letters" (Hangul fillers, braille
   blank) that render as nothing;
3. a word that mixes ASCII letters with Latin look-alikes from other scripts is folded to Latin
   (Unicode's confusables data plus letters whose Unicode name says which Latin letter they are:
   small capitals, regional indicators, squared letters); so is a word made only of look-alikes
   when the text around it is mostly Latin (Russian stays Russian);
4. a symbol (emoji) between two letters is dropped and any other is set apart by spaces, so
   `kill🔪` still reads `kill`; runs of single letters joined by spaces (`w a t c h`) or by one
   repeated separator (`k.i.l.l`, `k-i-l-l`) become one word;
5. a bracketed phrase keeps its words and loses its brackets (a context tag reads as its word) and any
   other `[` or `]` becomes `(` or `)`: user text can never spell a context tag
   (`formatting.context_prefix`) or a tokenizer special token;
6. whitespace runs collapse to one space.

Callers keep the original text for logs and records; only the model input is normalised.
`second_reading` gives the text as it reads with every possible disguise undone (all look-alikes
folded, leetspeak digits read as letters), which the preprocessing classifies beside the first
when it differs: those folds would damage ordinary text if applied to it alone (`mp3`, `как`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from importlib.resources import files

# ---- bidi: the order a reader sees ----------------------------------------------------------------
LRE, RLE, PDF, LRO, RLO = "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"
LRI, RLI, FSI, PDI = "\u2066", "\u2067", "\u2068", "\u2069"
_MAX_DEPTH = 125  # Unicode's limit on embedding depth


def display_order(text: str) -> str:
    """`text` in the order a reader sees it, per line (Unicode's bidi algorithm, reduced to what evasion uses).

    Overrides (RLO/LRO) force every character inside to one direction, embeddings and isolates
    (RLE/LRE/RLI/LRI/FSI) raise the level; PDF/PDI close them, unbalanced closers are ignored.
    Then rule L2: from the highest level down to the lowest odd one, every run at that level or
    above is reversed. Right-to-left scripts themselves are not reordered (their words are read
    in logical order, as the tokenizer expects).
    """
    if not any(mark in text for mark in (LRE, RLE, LRO, RLO, LRI, RLI, FSI)):
        return text
    return "\n".join(_reorder_line(line) for line in text.split("\n"))


def _reorder_line(line: str) -> str:
    stack: list[tuple[int, str | None, bool]] = [(0, None, False)]  # level, override, isolate
    characters: list[str] = []
    levels: list[int] = []
    for character in line:
        level, override, _ = stack[-1]
        if character in (RLE, RLO, RLI, LRE, LRO, LRI, FSI):
            rtl = character in (RLE, RLO, RLI)
            new_level = level + 1 + ((level + 1) % 2 == (0 if rtl else 1))
            new_override = "R" if character == RLO else "L" if character == LRO else None
            if new_level <= _MAX_DEPTH:
                stack.append((new_level, new_override, character in (RLI, LRI, FSI)))
            continue
        if character == PDF:
            if len(stack) > 1 and not stack[-1][2]:
                stack.pop()
            continue
        if character == PDI:
            while len(stack) > 1 and not stack[-1][2]:
                stack.pop()
            if len(stack) > 1:
                stack.pop()
            continue
        characters.append(character)
        levels.append(level if override == "R" or (override is None and level % 2 == 0) else level + (level % 2))
    if not levels:
        return ""
    for target in range(max(levels), 0, -1):
        index = 0
        while index < len(levels):
            if levels[index] >= target:
                end = index
                while end < len(levels) and levels[end] >= target:
                    end += 1
                characters[index:end] = characters[index:end][::-1]
                levels[index:end] = levels[index:end][::-1]
                index = end
            else:
                index += 1
    return "".join(characters)


# ---- invisible characters --------------------------------------------------------------------------
_BLANK_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800", "\u180e"}  # letters that render as nothing
_SKIN_TONES = {chr(code) for code in range(0x1F3FB, 0x1F400)}
_VARIATION_SELECTORS = {chr(code) for code in range(0xFE00, 0xFE10)} | {chr(code) for code in range(0xE0100, 0xE01F0)}
_DROPPED = _BLANK_LETTERS | _SKIN_TONES | _VARIATION_SELECTORS
_KEEP_CONTROLS = {"\n", "\t", "\r"}  # whitespace: collapsed below, never removed


def drop_invisible(text: str) -> str:
    """Remove what renders as nothing: format (Cf), control (Cc) and enclosing-mark (Me) characters, blanks."""
    return "".join(
        character
        for character in text
        if character in _KEEP_CONTROLS
        or (unicodedata.category(character) not in ("Cf", "Cc", "Me") and character not in _DROPPED)
    )


# ---- look-alikes -------------------------------------------------------------------------------------
# Look-alikes Unicode's table lacks or maps to `l` (found by the evasion suite's own Cyrillic/Greek table).
LOOKALIKES_MISSING_FROM_UNICODE = {"κ": "k", "к": "k", "χ": "x", "ʟ": "l", "Ι": "I", "І": "I"}
_NAMED_LATIN = re.compile(
    r"^(?:LATIN (?:SMALL |CAPITAL )?LETTER (?:SMALL CAPITAL |TURNED |INVERTED |SCRIPT |DOTLESS |REVERSED )?"
    r"|(?:NEGATIVE )?(?:SQUARED|CIRCLED|PARENTHESIZED) LATIN (?:SMALL |CAPITAL )?LETTER "
    r"|REGIONAL INDICATOR SYMBOL LETTER )([A-Z])$"  # never `... WITH ACUTE`: accented letters are real letters
)


@cache
def latin_lookalikes() -> dict[str, str]:
    """Non-ASCII characters that read as one ASCII letter or digit.

    From Unicode's confusables data (the `confusable_homoglyphs` package ships confusables.txt as
    JSON; entries whose look-alike is one ASCII letter or digit), plus every character whose
    Unicode name names its Latin letter (small capitals, regional indicators, squared letters).
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
    for code in range(0x80, 0x30000):  # every assigned Latin-like letter lies below U+30000
        character = chr(code)
        if character not in table and (match := _NAMED_LATIN.match(unicodedata.name(character, ""))):
            table[character] = match.group(1).lower()
    return table | LOOKALIKES_MISSING_FROM_UNICODE


def _foldable(word: str, table: dict[str, str]) -> bool:
    return not word.isascii() and all(ch.isascii() or ch in table or not ch.isalpha() for ch in word)


def fold_lookalikes(text: str, everywhere: bool = False) -> str:
    """Fold the words that are disguised Latin: every non-ASCII letter in them has a Latin look-alike.

    A word that mixes ASCII letters with look-alikes is always folded. A word made only of
    look-alikes (Russian `как`, or a disguised `уоu`) is folded when `everywhere`, or when the text
    around it is mostly Latin (at least as many ASCII letters as letters without a look-alike).
    """
    if text.isascii():
        return text
    table = latin_lookalikes()
    ascii_letters = sum(ch.isascii() and ch.isalpha() for ch in text)
    foreign_letters = sum(ch.isalpha() and not ch.isascii() and ch not in table for ch in text)
    fold_pure = everywhere or ascii_letters >= foreign_letters

    def fold(match: re.Match[str]) -> str:
        word = match.group(0)
        if not _foldable(word, table):
            return word
        if not fold_pure and not any(ch.isascii() and ch.isalpha() for ch in word):
            return word
        return "".join(table.get(ch, ch) for ch in word)

    return _WORD.sub(fold, text)


# ---- symbols, separators, spaced letters ----------------------------------------------------------------
_WORD = re.compile(r"\S+")


def _is_symbol(character: str) -> bool:
    return unicodedata.category(character) in ("So", "Sk")


def separate_symbols(text: str) -> str:
    """Drop a symbol (emoji) between two letters, set any other apart by spaces: `k🔪i🔪l🔪l`, `kill🔪` -> `kill`."""
    if text.isascii():
        return text
    out: list[str] = []
    for index, character in enumerate(text):
        if not _is_symbol(character):
            out.append(character)
            continue
        before = next((c for c in reversed(text[:index]) if not _is_symbol(c)), "")
        after = next((c for c in text[index + 1 :] if not _is_symbol(c)), "")
        if not (before.isalpha() and after.isalpha()):
            out.append(f" {character} ")
    return "".join(out)


_SEPARATED_LETTERS = re.compile(r"(?<![^\W_])([^\W\d_])([._\-*~+|/:])[^\W\d_](?:\2[^\W\d_])+(?![^\W_])")
_SPACED_RUN = re.compile(r"(?<!\S)\S(?: \S)+(?!\S)")  # single characters separated by single spaces
_MIN_SPACED_LETTERS = 3  # a run of two is joined only between wide gaps (`s o` in `w a t c h   s o`)


def join_separated_letters(text: str) -> str:
    """`k.i.l.l`, `k-i-l-l`, `k_i_l_l` -> `kill`: three or more single letters joined by one repeated separator."""
    return _SEPARATED_LETTERS.sub(lambda match: match.group(0).replace(match.group(2), ""), text)


def join_spaced_letters(text: str) -> str:
    """`w a t c h   y o u r` -> `watch your`: single characters one space apart are one word.

    A run of three or more is joined; a run of two only between wider gaps (or the text's ends),
    so ordinary text such as `a b and c d` stays as it is.
    """

    def wide_gap(start: int, end: int) -> bool:
        before = start == 0 or (start >= 2 and text[start - 2 : start].isspace())
        after = end == len(text) or (end + 2 <= len(text) and text[end : end + 2].isspace())
        return before and after

    def join(match: re.Match[str]) -> str:
        run = match.group(0)
        letters = (len(run) + 1) // 2
        if letters >= _MIN_SPACED_LETTERS or wide_gap(match.start(), match.end()):
            return run.replace(" ", "")
        return run

    return _SPACED_RUN.sub(join, text)


# ---- brackets, whitespace ---------------------------------------------------------------------------------
_BRACKETED = re.compile(r"\[([^\[\]]{0,64})\]")
_TAG_BRACKETS = str.maketrans({"[": "(", "]": ")"})
_WHITESPACE = re.compile(r"\s+")


def unwrap_brackets(text: str) -> str:
    """`[x] [y] hi` -> ` x   y  hi`; any other bracket becomes a parenthesis: no `[` reaches the model."""
    return _BRACKETED.sub(lambda match: f" {match.group(1)} ", text).translate(_TAG_BRACKETS)


def normalize_for_model(text: str) -> str:
    """The text the model reads (see the module docstring for each step and why)."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii() or any(not ch.isprintable() for ch in text):
        text = drop_invisible(display_order(text))
        text = separate_symbols(fold_lookalikes(unicodedata.normalize("NFKC", text)))
    text = join_spaced_letters(join_separated_letters(text))
    return _WHITESPACE.sub(" ", unwrap_brackets(text)).strip()


# ---- the second reading ------------------------------------------------------------------------------------
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_LEET_TOKEN = re.compile(r"[0-9A-Za-z@$]+")
_LETTER = re.compile(r"[A-Za-z]")
_LEET_CHARS = frozenset("013457@$")


def leet_variant(normalized: str) -> str | None:
    """`1 kn0w wh3re y0u l1ve` -> `i know where you live`; None when no word mixes letters with leet digits.

    Applied to already normalised text. Only a text with at least one word that mixes letters
    and leet characters is folded; then every word of letters, digits, `@` and `$` is
    (`5335` -> `sees`), while the first reading keeps numbers (`555 0100`) as they are.
    """
    words = _LEET_TOKEN.findall(normalized)
    if not any(_LETTER.search(word) and not _LEET_CHARS.isdisjoint(word) for word in words):
        return None
    return _LEET_TOKEN.sub(lambda match: match.group(0).translate(_LEET), normalized)


def second_reading(normalized: str) -> str | None:
    """The normalised text with every disguise undone (all look-alikes folded, leetspeak read); None if unchanged."""
    folded = fold_lookalikes(normalized, everywhere=True)
    folded = leet_variant(folded) or folded
    return None if folded == normalized else folded
