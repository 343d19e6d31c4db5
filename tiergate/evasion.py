"""The evasion suite: how a hostile user disguises a text, applied to every positive regression vector.

Each transformation keeps what a reader sees (or reads) and changes what a naive tokenizer
gets. They are written independently of `tiergate.normalization` (their own character tables),
so the suite measures the normalisation instead of restating it. Evaluation reports the
detection rate per transformation (`detection_table`); the live-server tests check the served
ensemble detects them at that rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Cyrillic and Greek letters a reader takes for Latin ones (hand-picked, not Unicode's table).
_HOMOGLYPHS = {
    "a": "\u0430", "c": "\u0441", "e": "\u0435", "i": "\u0456", "j": "\u0458", "o": "\u043e", "p": "\u0440",
    "s": "\u0455", "x": "\u0445", "y": "\u0443", "h": "\u04bb", "k": "\u03ba", "v": "\u03bd",
}  # fmt: skip
_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_SMALL_CAPITALS = dict(zip("abcdefghijklmnoprstuvwyz", "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ", strict=True))
_ACUTE = {"a": "á", "e": "é", "i": "í", "o": "ó", "u": "ú", "y": "ý", "n": "ñ", "c": "ç"}
_BOLD_A, _BOLD_SMALL_A, _FULLWIDTH_OFFSET = 0x1D400, 0x1D41A, 0xFEE0
BENIGN_PREFIX = (
    "thanks for the update about the weekend plans, the weather looks good and the market opens early. "
    "we can meet after lunch and then walk along the river before the shops close for the evening. "
    "bring a jacket because it gets cold near the water, and remember the tickets for the show later. "
)  # 300 characters: pushes what follows past the first window


def _per_letter(table: dict[str, str]) -> Callable[[str], str]:
    return lambda text: "".join(table.get(ch, ch) for ch in text)


def fullwidth(text: str) -> str:
    return "".join(chr(ord(ch) + _FULLWIDTH_OFFSET) if "!" <= ch <= "~" else "\u3000" if ch == " " else ch for ch in text)


def math_bold(text: str) -> str:
    def bold(ch: str) -> str:
        if "a" <= ch <= "z":
            return chr(_BOLD_SMALL_A + ord(ch) - ord("a"))
        if "A" <= ch <= "Z":
            return chr(_BOLD_A + ord(ch) - ord("A"))
        return ch

    return "".join(bold(ch) for ch in text)


def rtl_override(text: str) -> str:
    """Stored reversed behind U+202E: displayed (and read) as the original."""
    return "\u202e" + text[::-1] + "\u202c"


def spaced_letters(text: str) -> str:
    """`w a t c h   y o u r   b a c k`: letters one space apart, words three."""
    return "   ".join(" ".join(word) for word in text.split())


def spaced_single(text: str) -> str:
    """Every character one space apart: word boundaries are lost to any reader (reported, not required)."""
    return " ".join(text.replace(" ", ""))


def zero_width(text: str) -> str:
    return "\u200b".join(text)


def soft_hyphens(text: str) -> str:
    return " ".join("\u00ad".join(word) for word in text.split())


def diacritics(text: str) -> str:
    return _per_letter(_ACUTE)(text)


def dotted_letters(text: str) -> str:
    """`k.i.l.l y.o.u`: the letters of each word joined by dots."""
    return " ".join(".".join(word) if word.isalpha() else word for word in text.split())


def emoji_between_letters(text: str) -> str:
    return " ".join("\U0001f525".join(word) for word in text.split())


def benign_prefix(text: str) -> str:
    return BENIGN_PREFIX + text


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "fullwidth": fullwidth,
    "math_bold": math_bold,
    "rtl_override": rtl_override,
    "spaced_letters": spaced_letters,
    "cyrillic_homoglyphs": _per_letter(_HOMOGLYPHS),
    "leetspeak": _per_letter(_LEET),
    "zero_width": zero_width,
    "soft_hyphens": soft_hyphens,
    "upper_case": str.upper,
    "diacritics": diacritics,
    "small_capitals": _per_letter(_SMALL_CAPITALS),
    "dotted_letters": dotted_letters,
    "emoji_between_letters": emoji_between_letters,
    "benign_prefix": benign_prefix,
    "spaced_single": spaced_single,
}
REPORTED_ONLY = {"spaced_single", "dotted_letters", "emoji_between_letters"}
REQUIRED = [name for name in TRANSFORMS if name not in REPORTED_ONLY]
"""Transformations the served model must see through (target: >= 95 % of plain detection). Reported only:
`spaced_single` (no word boundaries left: no normalisation can restore the words), and `dotted_letters` /
`emoji_between_letters` (found by a hostile test; two-letter words such as `s.o` stay ambiguous with `e.g`)."""
TARGET_RATE = 0.95


@dataclass(frozen=True)
class Probe:
    """One positive vector check: a text that must be flagged with `flag` in `context`."""

    id: str
    text: str
    context: str
    flag: tuple[str, ...]


Classify = Callable[[list[str], list[str]], np.ndarray]  # texts, contexts -> flags [texts, labels]


PROBE_SUITE = "positives"


def positive_probes(suites: Sequence[Any]) -> list[Probe]:
    """Every must-flag check of the `positives` suite (`tiergate.regression.Suite`): each category's plain core pattern.

    Other suites hold texts that are disguised already (the adversarial suite's evasion vectors); a
    transformation of a disguise measures nothing a reader would send.
    """
    probes = []
    for suite in suites:
        if suite.suite != PROBE_SUITE:
            continue
        for vector in suite.hard_vectors:
            for index, check in enumerate(vector.all_checks()):
                if check.flag:
                    probes.append(Probe(f"{vector.id}#{index}", vector.text, check.context, tuple(check.flag)))
    return probes


def detected(flags: np.ndarray, probes: Sequence[Probe], labels: Sequence[str]) -> np.ndarray:
    """Per probe, whether every category it must flag was flagged."""
    columns = {name: index for index, name in enumerate(labels)}
    return np.array([all(flags[row, columns[name]] for name in probe.flag) for row, probe in enumerate(probes)], dtype=bool)


def detection_table(probes: Sequence[Probe], labels: Sequence[str], classify: Classify) -> dict[str, Any]:
    """Detection of each transformation of each probe, relative to the plain texts' detection.

    `rate` is detected-after-transformation among the probes the plain text detects: a
    transformation is judged on what the model can do without it, not on the model's misses.
    """
    contexts = [probe.context for probe in probes]
    plain = detected(classify([probe.text for probe in probes], contexts), probes, labels)
    rows = []
    for name, transform in TRANSFORMS.items():
        hits = detected(classify([transform(probe.text) for probe in probes], contexts), probes, labels)
        base = int(plain.sum())
        kept = int((hits & plain).sum())
        rows.append(
            {
                "transform": name,
                "required": name in REQUIRED,
                "probes": len(probes),
                "detected": int(hits.sum()),
                "plain_detected": base,
                "rate": round(kept / base, 4) if base else None,
                "missed": [probe.id for probe, hit, seen in zip(probes, hits, plain, strict=True) if seen and not hit],
            }
        )
    required = [rate for row in rows if row["required"] and isinstance(rate := row["rate"], float)]
    return {
        "probes": len(probes),
        "plain_detected": int(plain.sum()),
        "target_rate": TARGET_RATE,
        "rows": rows,
        "passed": all(rate >= TARGET_RATE for rate in required),
    }
