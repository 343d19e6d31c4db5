"""What every LLM generator shares: prompts from the taxonomy, answer parsing, the response cache.

The cache is keyed by (model, prompt, params, seed) and written one file per answer,
atomically, as answers arrive: a crash loses nothing already answered, and a rerun
asks only for what is missing. Transport errors are never cached; refusals are
(they are the model's answer) and are counted per category, never silently dropped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from tiergate.components.generate.base import GenerationResult, Outcome, ProgressCallback
from tiergate.components.generate.plan import GenerationRequest
from tiergate.hashing import sha256_json, write_json
from tiergate.profiles import GeneratorSettings
from tiergate.records import Kind
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)

SYSTEM_PROMPT = """You write training examples for a content-moderation text classifier used by trust-and-safety teams.
Rules for every example:
- Short (one or two sentences), realistic platform text, varied in wording, names and style.
- Non-graphic: signal the pattern, never describe violence, injury or sexual acts in detail.
- Nothing sexual involving minors in any form. Child-safety examples use only non-explicit grooming,
  age-signalling or solicitation language.
Answer with JSON only: {"examples": ["...", "..."]} with exactly the number of strings asked for, in order."""

_KIND_INSTRUCTIONS = {
    Kind.POSITIVE: "Write examples that clearly belong to the category.",
    Kind.HARD_NEGATIVE: (
        "Write HARD NEGATIVES: genuinely benign texts near the category's boundary that share topic or words with it "
        "but do NOT belong to it. They must be neutral: no coercion, threats or abuse of any kind."
    ),
    Kind.INNOCUOUS: "Write ordinary, everyday platform texts with no policy issue at all, loosely on the category's topic.",
}
_REFUSAL = re.compile(r"^\s*(i can(?:'|no)t|i cannot|i won'?t|i'm not able|i am not able|sorry)", re.IGNORECASE)


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    max_tokens: int
    temperature: float
    seed: int

    def cache_key(self, model: str) -> str:
        return sha256_json({"model": model, "prompt": asdict(self)})


@dataclass
class Completion:
    """A raw model answer (cached as such, so parser changes never need regeneration)."""

    text: str
    stop_reason: str | None = None
    refused: bool = False
    error: str | None = None


def build_prompt(taxonomy: Taxonomy, request: GenerationRequest, settings: GeneratorSettings, seed: int) -> Prompt:
    category = taxonomy.category(request.category)
    seeds = category.seeds.hard_negative if request.kind is Kind.HARD_NEGATIVE else category.seeds.positive
    lines = [
        f"Category: {category.name} (tier {category.tier})",
        f"Definition: {category.definition}",
        f"Not in this category: {category.not_in}",
        "Seed examples (style only, do not copy):",
        *[f"- {seed_text}" for seed_text in seeds],
        "",
        _KIND_INSTRUCTIONS[request.kind],
    ]
    lines += boundary_lines(taxonomy, request)
    if request.secondary is not None:
        other = taxonomy.category(request.secondary)
        lines += [
            f"Every example must ALSO clearly belong to a second category: {other.name}.",
            f"Definition of {other.name}: {other.definition}",
            "Write text that naturally exhibits both categories at once.",
        ]
        for seed_text in category.overlap_seeds.get(other.name, []):
            lines.append(f"- combined seed: {seed_text}")
    lines += [
        "",
        f"Write {len(request.items)} examples, one per line below, each for the context given "
        "(audience general = any user, adult = an adult-only area; surface = message, bio, listing or review):",
        *[f"{position + 1}. {item.context}" for position, item in enumerate(request.items)],
        f"(variation {request.chunk})",
    ]
    return Prompt(SYSTEM_PROMPT, "\n".join(lines), settings.max_tokens, settings.temperature, seed + request.chunk)


def boundary_lines(taxonomy: Taxonomy, request: GenerationRequest) -> list[str]:
    """Boundary seeds in the prompt: for positives, neighbours' boundary cases that belong here; for hard
    negatives, this category's boundary cases that belong to a neighbour, so the batch stays neutral."""
    if request.kind is Kind.POSITIVE:
        pairs = taxonomy.boundary_seeds_for(request.category)
        if not pairs:
            return []
        return ["Boundary examples (they belong to this category, not to the one named):"] + [
            f"- {text} (not {origin})" for origin, text in pairs
        ]
    if request.kind is Kind.HARD_NEGATIVE:
        boundary = taxonomy.category(request.category).seeds.boundary
        if not boundary:
            return []
        return ["These belong to another category, so they are NOT hard negatives; write nothing like them:"] + [
            f"- {text} ({other})" for other, texts in boundary.items() for text in texts
        ]
    return []


def parse_examples(completion: Completion, expected: int) -> tuple[list[str], Outcome, str]:
    """Texts from a model answer, and how the answer fared."""
    if completion.error is not None:
        return [], Outcome.ERROR, completion.error
    if completion.refused or (completion.stop_reason == "refusal"):
        return [], Outcome.REFUSED, f"stop_reason={completion.stop_reason}"
    text = completion.text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        if _REFUSAL.match(completion.text):
            return [], Outcome.REFUSED, completion.text.strip()[:120]
        return [], Outcome.MALFORMED, "no JSON object in the answer"
    try:
        payload = json.loads(text[start : end + 1])
    except json.JSONDecodeError as error:
        return [], Outcome.MALFORMED, f"invalid JSON: {error.msg}"
    examples = payload.get("examples") if isinstance(payload, dict) else None
    if not isinstance(examples, list):
        return [], Outcome.MALFORMED, "JSON has no 'examples' list"
    texts = [example.strip() for example in examples if isinstance(example, str) and example.strip()]
    texts = texts[:expected]
    if len(texts) < expected:
        return texts, Outcome.SHORT, f"{len(texts)} of {expected} examples"
    return texts, Outcome.OK, ""


class ResponseCache:
    """One JSON file per answer under `root`, written atomically; safe across crashes."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return Completion(**json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError):
            log.warning("ignoring unreadable cache entry %s", path)
            return None

    def put(self, key: str, completion: Completion) -> None:
        if completion.error is not None:
            return  # transport errors are retried next run, never cached
        write_json(self._path(key), asdict(completion))

    def state_path(self, name: str) -> Path:
        return self.root / "state" / f"{name}.json"


class CompletionBackend(Protocol):
    """Turns prompts into completions; may batch. Must call `on_answer` as each answer arrives."""

    model: str

    def complete(self, prompts: Mapping[str, Prompt], cache: ResponseCache, job_name: str) -> dict[str, Completion]: ...


class LLMGenerator:
    """A generator backed by an LLM API; caching and accounting are shared by all backends."""

    smoke_test = False

    def __init__(
        self,
        name: str,
        taxonomy: Taxonomy,
        settings: GeneratorSettings,
        backend: CompletionBackend,
        cache: ResponseCache,
        seed: int,
    ):
        self.name = name
        self.model = settings.model
        self.taxonomy = taxonomy
        self.settings = settings
        self.backend = backend
        self.cache = cache
        self.seed = seed

    def run(self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None) -> list[GenerationResult]:
        prompts = {request: build_prompt(self.taxonomy, request, self.settings, self.seed) for request in requests}
        keys = {request: prompt.cache_key(self.model) for request, prompt in prompts.items()}
        answers: dict[str, Completion] = {}
        missing: dict[str, Prompt] = {}
        for request, prompt in prompts.items():
            cached = self.cache.get(keys[request])
            if cached is not None:
                answers[keys[request]] = cached
            else:
                missing[keys[request]] = prompt
        hits = set(answers)
        log.info("%s: %d requests, %d cached, %d to ask", self.name, len(prompts), len(hits), len(missing))
        if missing:
            job = requests[0].category if requests else "job"
            answers.update(self.backend.complete(missing, self.cache, job_name=f"{job}-{sha256_json(sorted(missing))[:12]}"))
        results = []
        total = sum(len(request.items) for request in requests)
        done = 0
        for request in requests:
            key = keys[request]
            completion = answers.get(key) or Completion(text="", error="no answer returned")
            texts, outcome, detail = parse_examples(completion, len(request.items))
            results.append(GenerationResult(request, texts, outcome, key[:16], cached=key in hits, detail=detail))
            done += len(request.items)
            if progress:
                progress(done, total)
        return results
