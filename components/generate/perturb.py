"""Perturbation examples: noisy twins (typos, leetspeak, spacing, emoji) of generated records.

A perturbed twin keeps its origin's labels: a threat in leetspeak is still a threat, a
benign text with typos is still benign. The twin remembers its origin so it always
lands in the origin's split (no train/test leakage through near-copies).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from tiergate.hashing import sha256_text
from tiergate.records import Kind, Record, Source, make_record

Edit = Callable[[str, random.Random, dict[str, Any]], str]


def _letter_positions(text: str) -> list[int]:
    return [index for index, char in enumerate(text) if char.isalpha()]


def _swap(text: str, rng: random.Random, vocab: dict[str, Any]) -> str:
    positions = [i for i in _letter_positions(text) if i + 1 < len(text) and text[i + 1].isalpha()]
    if not positions:
        return text
    i = rng.choice(positions)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _double(text: str, rng: random.Random, vocab: dict[str, Any]) -> str:
    positions = _letter_positions(text)
    if not positions:
        return text
    i = rng.choice(positions)
    return text[: i + 1] + text[i] + text[i + 1 :]


def _leet(text: str, rng: random.Random, vocab: dict[str, Any]) -> str:
    table: dict[str, str] = vocab["leet"]
    positions = [i for i, char in enumerate(text) if char.lower() in table]
    if not positions:
        return text
    i = rng.choice(positions)
    return text[:i] + table[text[i].lower()] + text[i + 1 :]


def _spaced_word(text: str, rng: random.Random, vocab: dict[str, Any]) -> str:
    words = text.split(" ")
    candidates = [i for i, word in enumerate(words) if len(word) >= 4 and word.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    words[i] = " ".join(words[i])
    return " ".join(words)


def _shout(text: str, rng: random.Random, vocab: dict[str, Any]) -> str:
    words = text.split(" ")
    i = rng.randrange(len(words))
    words[i] = words[i].upper()
    return " ".join(words)


def _emoji(text: str, rng: random.Random, vocab: dict[str, Any]) -> str:
    return f"{text} {rng.choice(vocab['emoji'])}"


EDITS: tuple[Edit, ...] = (_swap, _double, _leet, _spaced_word, _shout, _emoji)


def perturb_text(text: str, rng: random.Random, vocab: dict[str, Any], max_edits: int) -> str:
    result = text
    for _ in range(rng.randint(1, max_edits)):
        result = rng.choice(EDITS)(result, rng, vocab)
    return result


def perturbations(records: Sequence[Record], fraction: float, max_edits: int, seed: int, vocab: dict[str, Any]) -> list[Record]:
    """Perturbed twins for a deterministic `fraction` of `records` (chosen by record hash)."""
    twins = []
    for record in records:
        key = int(sha256_text(f"{seed}\x1fperturb\x1f{record.id}\x1f{record.context}")[:16], 16)
        if key / float(1 << 64) >= fraction:
            continue
        rng = random.Random(key)
        text = perturb_text(record.text, rng, vocab, max_edits)
        if text == record.text:
            continue
        source = Source(
            generator=record.source.generator,
            model=record.source.model,
            prompt_id=record.source.prompt_id + "~perturbed",
            category=record.source.category,
            kind=Kind.PERTURBATION,
            secondary=record.source.secondary,
            origin_id=record.id,
        )
        twins.append(make_record(text, record.context, record.labels, source))
    return twins
