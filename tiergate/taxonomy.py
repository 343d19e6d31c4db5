"""The taxonomy: categories in model order, tiers and their policy, validated on load.

Every config lesson of docs/lessons.md is checked here, at load time:
label order is hashed into every artifact, every tier has a gate, overlaps and
overrides name real categories, and a hard-negative seed that carries its own
category's positive signals (docs/lessons.md#poisoned-seed) is refused.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator

from tiergate.errors import ConfigError
from tiergate.hashing import sha256_json, sha256_text
from tiergate.paths import config_path
from tiergate.strict import StrictModel, format_validation_error
from tiergate.yaml_io import load_yaml

CATEGORY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SLOT = re.compile(r"\{([a-z_]+)\}")
SEED_SLOTS = frozenset({"name", "place", "time", "amount", "day", "platform", "city"})

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class TierPolicy(StrictModel):
    """Training and gating policy shared by every category of one tier."""

    name: str
    description: str
    pos_weight_cap: float = Field(gt=0)
    threshold_range: tuple[Probability, Probability]
    f1_gate: Probability
    recall_floor: Probability | None = None

    @field_validator("threshold_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise ValueError(f"lower bound {value[0]} must be below upper bound {value[1]}")
        return value


class GenerationCounts(StrictModel):
    positives: int = Field(ge=0)
    hard_negatives: int = Field(ge=0)
    innocuous: int = Field(ge=0)


class GenerationCountOverride(StrictModel):
    positives: int | None = Field(default=None, ge=0)
    hard_negatives: int | None = Field(default=None, ge=0)
    innocuous: int | None = Field(default=None, ge=0)


class Seeds(StrictModel):
    """Seed examples: the generative prior for a whole batch, so they are checked.

    `boundary` holds texts at this category's boundary that belong to a *neighbour* category
    (neighbour name -> texts): they are generated as that neighbour's positives, so they are
    labelled with it and not with this category. A text that is not neutral never goes into
    `hard_negative` (docs/lessons.md#poisoned-seed: every hard negative is labelled safe for
    every category).
    """

    positive: list[str] = Field(min_length=1)
    hard_negative: list[str] = Field(min_length=1)
    boundary: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("positive", "hard_negative")
    @classmethod
    def _known_slots(cls, values: list[str]) -> list[str]:
        return check_slots(values)

    @field_validator("boundary")
    @classmethod
    def _boundary_slots(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for texts in value.values():
            check_slots(texts)
        return value


def check_slots(values: list[str]) -> list[str]:
    for text in values:
        unknown = set(SLOT.findall(text)) - SEED_SLOTS
        if unknown:
            raise ValueError(f"seed {text!r} uses unknown slots {sorted(unknown)}; allowed: {sorted(SEED_SLOTS)}")
    return values


class ColabelRule(StrictModel):
    """Keyword co-label rule. Off by default: docs/lessons.md#keyword-colabels."""

    keywords: list[str] = Field(min_length=1)
    label: str


class SecondaryLabelRule(StrictModel):
    """A positive of this category that contains one of `phrases` is also a positive of `label`.

    Applied when generating (never at merge): narrow, phrase-level, on the category's own
    positives only (log Exp 31: anti_trans dehumanisation phrases also carry hate_speech;
    identity words were dropped from the rule because providers use them of themselves).
    """

    phrases: list[str] = Field(min_length=1)
    label: str

    @cached_property
    def patterns(self) -> list[re.Pattern[str]]:
        return [compile_signal(fold_apostrophes(phrase)) for phrase in self.phrases]

    def matches(self, text: str) -> bool:
        folded = fold_apostrophes(text)
        return any(pattern.search(folded) for pattern in self.patterns)


def fold_apostrophes(text: str) -> str:
    """Typographic apostrophes as ASCII ones, so "you’ll" matches the phrase "you'll"."""
    return text.replace("\u2019", "'").replace("\u2018", "'")


class Category(StrictModel):
    name: str
    tier: int
    definition: str = Field(min_length=10)
    not_in: str = Field(min_length=10)
    signals: list[str] = Field(min_length=1)
    seeds: Seeds
    optional: bool = False
    overlaps: dict[str, Probability] = Field(default_factory=dict)
    overlap_seeds: dict[str, list[str]] = Field(default_factory=dict)
    threshold_max: Probability | None = None
    threshold_min: Probability | None = None
    allowed_in: list[str] = Field(default_factory=list)
    generation: dict[str, GenerationCountOverride] = Field(default_factory=dict)
    colabel_rules: list[ColabelRule] = Field(default_factory=list)
    secondary_label_rules: list[SecondaryLabelRule] = Field(default_factory=list)

    @field_validator("overlap_seeds")
    @classmethod
    def _overlap_slots(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for seeds in value.values():
            check_slots(seeds)
        return value

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not CATEGORY_NAME.match(value):
            raise ValueError(f"category name {value!r} must be lower snake_case")
        return value

    @cached_property
    def signal_patterns(self) -> list[re.Pattern[str]]:
        return [compile_signal(signal) for signal in self.signals]

    def matching_signals(self, text: str) -> list[str]:
        """The positive signals of this category found in `text` (case-insensitive, word-bounded)."""
        return [signal for signal, pattern in zip(self.signals, self.signal_patterns, strict=False) if pattern.search(text)]

    def secondary_labels(self, text: str) -> list[str]:
        """Labels this category's secondary-label rules add to a positive with `text`, sorted."""
        return sorted({rule.label for rule in self.secondary_label_rules if rule.matches(text)})


def compile_signal(signal: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(signal.lower()) + r"(?!\w)", re.IGNORECASE)


class Contexts(StrictModel):
    audiences: list[str] = Field(min_length=1)
    surfaces: list[str] = Field(min_length=1)


class ThresholdSearch(StrictModel):
    step: float = Field(gt=0, lt=1)


class ComparisonPolicy(StrictModel):
    """When a drop against the previously promoted model blocks promotion (components/evaluate/comparison.py).

    A category listed in `categories` (default: every category) whose test F1 falls by more than
    `max_f1_drop` below the previous model's, with a paired-bootstrap interval of the difference that
    excludes zero, fails the gate (log: a regression on the original 18 categories is a deployment blocker).
    """

    max_f1_drop: Probability
    categories: list[str] | None = None


class GenerationConfig(StrictModel):
    counts: dict[str, GenerationCounts] = Field(min_length=1)


class Taxonomy(StrictModel):
    """The validated taxonomy. `labels` is the model's output order."""

    version: int
    contexts: Contexts
    tiers: dict[int, TierPolicy]
    threshold_search: ThresholdSearch
    generation: GenerationConfig
    categories: list[Category] = Field(min_length=1)
    comparison: ComparisonPolicy | None = None  # none: the comparison is reported, never blocks

    @model_validator(mode="after")
    def _cross_checks(self) -> Taxonomy:
        names = [category.name for category in self.categories]
        seen: set[str] = set()
        for index, name in enumerate(names):
            if name in seen:
                raise ValueError(f"categories[{index}].name: duplicate category {name!r}")
            seen.add(name)
        for index, category in enumerate(self.categories):
            where = f"categories[{index}] ({category.name})"
            if category.tier not in self.tiers:
                raise ValueError(f"{where}.tier: tier {category.tier} has no entry under 'tiers' (no gate defined)")
            for other in category.overlaps:
                if other not in seen:
                    raise ValueError(f"{where}.overlaps.{other}: unknown category {other!r}")
                if other == category.name:
                    raise ValueError(f"{where}.overlaps.{other}: a category cannot overlap itself")
            for other in category.overlap_seeds:
                if other not in category.overlaps:
                    raise ValueError(f"{where}.overlap_seeds.{other}: {other!r} is not one of this category's overlaps")
            for rule_index, rule in enumerate(category.colabel_rules):
                if rule.label not in seen:
                    raise ValueError(f"{where}.colabel_rules[{rule_index}].label: unknown category {rule.label!r}")
            for rule_index, secondary in enumerate(category.secondary_label_rules):
                if secondary.label not in seen or secondary.label == category.name:
                    raise ValueError(
                        f"{where}.secondary_label_rules[{rule_index}].label: {secondary.label!r} is not another category"
                    )
            for other, texts in category.seeds.boundary.items():
                if other not in seen or other == category.name:
                    raise ValueError(f"{where}.seeds.boundary.{other}: {other!r} is not another category")
                for seed_index, seed in enumerate(texts):
                    if category.matching_signals(seed):
                        raise ValueError(
                            f"{where}.seeds.boundary.{other}[{seed_index}]: seed carries the category's own positive "
                            f"signals {category.matching_signals(seed)}; it would be generated as a negative of it"
                        )
            for audience in category.allowed_in:
                if audience not in self.contexts.audiences:
                    raise ValueError(f"{where}.allowed_in: unknown audience {audience!r}")
            for profile in category.generation:
                if profile not in self.generation.counts:
                    raise ValueError(f"{where}.generation.{profile}: unknown profile (known: {sorted(self.generation.counts)})")
            low, high = self.tiers[category.tier].threshold_range
            lowest, highest = category.threshold_min, category.threshold_max
            if lowest is not None and highest is not None and lowest > highest:
                raise ValueError(f"{where}.threshold_min: {lowest} is above threshold_max {highest}")
            for key in ("threshold_min", "threshold_max"):
                bound = getattr(category, key)
                if bound is not None and not low <= bound <= high:
                    raise ValueError(f"{where}.{key}: {bound} is outside tier {category.tier} range [{low}, {high}]")
            for seed_index, seed in enumerate(category.seeds.hard_negative):
                hits = category.matching_signals(seed)
                if hits:
                    raise ValueError(
                        f"{where}.seeds.hard_negative[{seed_index}]: seed carries the category's own positive "
                        f"signals {hits}; a poisoned seed would label a whole batch of positives as negatives"
                    )
        return self

    @model_validator(mode="after")
    def _comparison_categories(self) -> Taxonomy:
        if self.comparison is not None and self.comparison.categories is not None:
            unknown = sorted(set(self.comparison.categories) - set(self.labels))
            if unknown:
                raise ValueError(f"comparison.categories: unknown categories {unknown}")
        return self

    def compared_categories(self) -> list[str]:
        """The categories whose drop against the previous model can block promotion, in label order."""
        if self.comparison is None:
            return []
        named = self.comparison.categories
        return [name for name in self.labels if named is None or name in named]

    @property
    def labels(self) -> list[str]:
        return [category.name for category in self.categories]

    @property
    def labels_sha256(self) -> str:
        """Hash of the ordered label list (not the whole taxonomy: see `content_sha256`).

        It is the identity every artifact is checked against, written as `taxonomy_sha256`.
        """
        return taxonomy_sha256(self.labels)

    def tier_vector(self) -> list[int]:
        """Each label's tier number, in label (model output) order."""
        return [category.tier for category in self.categories]

    def optional_labels(self) -> list[str]:
        """The optional categories (switchable at inference), in label order."""
        return [category.name for category in self.categories if category.optional]

    @property
    def content_sha256(self) -> str:
        """Hash of the whole taxonomy content, for provenance of resolved configs."""
        return sha256_json(self.model_dump(mode="json"))

    def category(self, name: str) -> Category:
        for category in self.categories:
            if category.name == name:
                return category
        raise ConfigError(f"unknown category {name!r}; known: {', '.join(self.labels)}")

    def positive_seeds(self, name: str) -> list[str]:
        """Seeds for `name`'s positives: its own, then boundary seeds other categories file under it."""
        own = list(self.category(name).seeds.positive)
        return own + [text for _, text in self.boundary_seeds_for(name)]

    def boundary_seeds_for(self, name: str) -> list[tuple[str, str]]:
        """(category whose boundary it guards, text) for every boundary seed that is a positive of `name`."""
        return [(category.name, text) for category in self.categories for text in category.seeds.boundary.get(name, [])]

    def tier_of(self, name: str) -> TierPolicy:
        return self.tiers[self.category(name).tier]

    def counts_for(self, name: str, profile: str) -> GenerationCounts:
        """Generation counts for a category under a profile, category overrides applied."""
        if profile not in self.generation.counts:
            raise ConfigError(f"generation.counts has no profile {profile!r}; known: {sorted(self.generation.counts)}")
        base = self.generation.counts[profile].model_dump()
        override = self.category(name).generation.get(profile)
        if override is not None:
            base.update({key: value for key, value in override.model_dump().items() if value is not None})
        return GenerationCounts(**base)

    def threshold_bounds(self, name: str) -> tuple[float, float]:
        """Search range for a category: its tier's range narrowed by per-category overrides."""
        category = self.category(name)
        low, high = self.tiers[category.tier].threshold_range
        if category.threshold_min is not None:
            low = max(low, category.threshold_min)
        if category.threshold_max is not None:
            high = min(high, category.threshold_max)
        return low, high

    def summary(self) -> dict[str, Any]:
        return {
            "categories": [{"name": category.name, "tier": category.tier} for category in self.categories],
            "sha256": self.labels_sha256,
        }


def taxonomy_sha256(labels: list[str]) -> str:
    return sha256_text("\n".join(labels))


def parse_taxonomy(data: Any, source: str = "<taxonomy>") -> Taxonomy:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Taxonomy.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: {format_validation_error(error)}") from None


def default_taxonomy_path() -> Path:
    """config/taxonomy.yaml of the config tree in use (packaged, or $TIERGATE_HOME's)."""
    return config_path("taxonomy.yaml")


def load_taxonomy(path: Path | str | None = None) -> Taxonomy:
    path = Path(path) if path is not None else default_taxonomy_path()
    if not path.is_file():
        raise ConfigError(f"taxonomy file not found: {path}")
    return parse_taxonomy(load_yaml(path), str(path))
