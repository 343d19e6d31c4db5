"""The generator interface and what a generator reports back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from tiergate.components.generate.plan import GenerationRequest


class Outcome(StrEnum):
    OK = "ok"
    SHORT = "short"  # fewer examples than asked for; the rest counted as missing
    REFUSED = "refused"  # the model declined (log: Claude refuses csam)
    MALFORMED = "malformed"  # the answer could not be parsed
    ERROR = "error"  # transport / API error after retries


@dataclass
class GenerationResult:
    request: GenerationRequest
    texts: list[str]  # aligned with request.items; may be shorter
    outcome: Outcome
    prompt_id: str
    cached: bool = False
    detail: str = ""


ProgressCallback = Callable[[int, int], None]


class TextGenerator(Protocol):
    """Writes example texts for planned requests. Implementations: offline, anthropic, openai-compatible."""

    name: str
    model: str
    smoke_test: bool

    def run(self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None) -> list[GenerationResult]: ...
