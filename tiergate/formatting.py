"""The one place the model input is built. Train, evaluate and serving all call this."""

from __future__ import annotations

from tiergate.records import Context


def context_prefix(context: Context) -> str:
    """`[GENERAL][MESSAGE]`: audience then surface, upper-case tags."""
    return f"[{context.audience.upper()}][{context.surface.upper()}]"


def format_input(text: str, context: Context) -> str:
    """Model input for `text` seen in `context`, e.g. `[ADULT][BIO] text`."""
    return f"{context_prefix(context)} {text.strip()}"
