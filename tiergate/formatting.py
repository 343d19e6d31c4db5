"""The one place the model input is built. Train, evaluate and serving all call this."""

from __future__ import annotations

from tiergate.normalization import normalize_for_model, second_reading
from tiergate.records import Context, normalise_text


def context_prefix(context: Context) -> str:
    """`[GENERAL][MESSAGE]`: audience then surface, upper-case tags."""
    return f"[{context.audience.upper()}][{context.surface.upper()}]"


def format_input(text: str, context: Context) -> str:
    """Model input for `text` seen in `context`, e.g. `[ADULT][BIO] text` (the text normalised, tags escaped)."""
    return f"{context_prefix(context)} {normalize_for_model(text)}"


def model_readings(text: str) -> list[str]:
    """What the model classifies of `text`: its normalised form, plus the reading with every disguise undone
    (all look-alikes folded, leetspeak read) when that differs. A text is flagged when any reading is;
    training sees the first reading only."""
    normalized = normalize_for_model(text)
    second = second_reading(normalized)
    return [normalized] if second is None else [normalized, second]


def reading_key(text: str) -> str:
    """The identity of a text as the model reads it (first reading, case-folded): two texts with one key are one input."""
    return normalise_text(normalize_for_model(text))
