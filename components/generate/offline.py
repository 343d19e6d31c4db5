"""The offline generator: procedural, deterministic, no network. Its output is smoke-test data.

Texts are the taxonomy's seed examples (a category's positives include the boundary seeds
neighbours file under it) with slots filled and light framing (openers, tails). Multi-label
items join a primary and a secondary seed, or use the category's hand-written `overlap_seeds`.
Same seed + taxonomy => byte-identical output.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tiergate.components.generate.base import GenerationResult, Outcome, ProgressCallback
from tiergate.components.generate.plan import GenerationRequest, ItemSpec
from tiergate.errors import ConfigError
from tiergate.hashing import sha256_text
from tiergate.paths import config_path
from tiergate.records import Kind
from tiergate.taxonomy import SLOT, Taxonomy
from tiergate.yaml_io import load_yaml


def load_vocabulary(path: Path | None = None) -> dict[str, Any]:
    """The vocabulary file: `path`, or config/generators/offline.yaml of the config tree in use."""
    path = path or config_path("generators", "offline.yaml")
    if not path.is_file():
        raise ConfigError(f"offline generator vocabulary not found: {path}")
    data = load_yaml(path)
    required = {"slots", "openers", "tails", "connectors", "innocuous", "variation", "leet", "emoji"}
    missing = required - set(data or {})
    if missing:
        raise ConfigError(f"{path}: missing keys {sorted(missing)}")
    return data


class OfflineGenerator:
    name = "offline"
    smoke_test = True

    def __init__(
        self, taxonomy: Taxonomy, seed: int, vocabulary: dict[str, Any] | None = None, model: str = "offline-templates-v1"
    ):
        self.taxonomy = taxonomy
        self.seed = seed
        self.vocabulary = vocabulary or load_vocabulary()
        self.model = model

    def _rng(self, item: ItemSpec) -> random.Random:
        key = sha256_text(f"{self.seed}\x1f{item.category}\x1f{item.kind.value}\x1f{item.index}")
        return random.Random(int(key[:16], 16))

    def _fill(self, template: str, rng: random.Random) -> str:
        slots = self.vocabulary["slots"]
        return SLOT.sub(lambda match: rng.choice(slots[match.group(1)]), template)

    def _core(self, item: ItemSpec, rng: random.Random) -> str:
        category = self.taxonomy.category(item.category)
        if item.kind is Kind.INNOCUOUS:
            return rng.choice(self.vocabulary["innocuous"][item.context.surface])
        if item.kind is Kind.HARD_NEGATIVE:
            return rng.choice(category.seeds.hard_negative)
        primary = rng.choice(self.taxonomy.positive_seeds(item.category))
        if item.secondary is None:
            return primary
        if item.secondary in category.overlap_seeds:
            return rng.choice(category.overlap_seeds[item.secondary])
        secondary = rng.choice(self.taxonomy.category(item.secondary).seeds.positive)
        return primary + rng.choice(self.vocabulary["connectors"]) + secondary

    def _vary(self, text: str, rng: random.Random) -> str:
        """Swap one determiner and/or insert one filler word: same pattern, different wording."""
        variation = self.vocabulary["variation"]
        if rng.random() >= variation["probability"]:
            return text
        words = text.split(" ")
        determiners = [i for i, word in enumerate(words) if word in variation["determiners"]]
        if determiners:
            words[rng.choice(determiners)] = rng.choice(variation["determiners"])
        if len(words) > 2:
            words.insert(rng.randrange(1, len(words)), rng.choice(variation["fillers"]))
        return " ".join(words)

    def write(self, item: ItemSpec) -> str:
        rng = self._rng(item)
        core = self._vary(self._fill(self._core(item, rng), rng), rng)
        return (rng.choice(self.vocabulary["openers"]) + core + rng.choice(self.vocabulary["tails"])).strip()

    def run(self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None) -> list[GenerationResult]:
        results = []
        total = sum(len(request.items) for request in requests)
        done = 0
        for request in requests:
            texts = [self.write(item) for item in request.items]
            prompt_id = f"offline:{request.category}:{request.kind.value}:{request.chunk}"
            results.append(GenerationResult(request, texts, Outcome.OK, prompt_id))
            done += len(texts)
            if progress:
                progress(done, total)
        return results
