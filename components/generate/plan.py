"""What to generate for one category: one item per example, planned before any generator runs.

Multi-label data is made *by construction* (docs/lessons.md#multilabel-by-construction): for each configured overlap
the last items of a category's positive index range get a secondary category and the
generator is asked for text that genuinely shows both. Single-label items keep their
index, so changing an overlap rate never changes the prompts of the other items.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tiergate.hashing import sha256_text
from tiergate.records import Context, Kind
from tiergate.taxonomy import GenerationCounts, Taxonomy

_KIND_COUNT_FIELD = {Kind.POSITIVE: "positives", Kind.HARD_NEGATIVE: "hard_negatives", Kind.INNOCUOUS: "innocuous"}


@dataclass(frozen=True)
class ItemSpec:
    """One example to write: category, kind, position in its range, context, optional co-label."""

    category: str
    kind: Kind
    index: int
    context: Context
    secondary: str | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        if self.kind is not Kind.POSITIVE:
            return ()
        return (self.category,) if self.secondary is None else (self.category, self.secondary)


@dataclass(frozen=True)
class GenerationRequest:
    """A unit of work for a generator: items of one category, kind and secondary category."""

    category: str
    kind: Kind
    secondary: str | None
    items: tuple[ItemSpec, ...]
    chunk: int


def stable_unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the given parts (no global RNG state)."""
    return int(sha256_text("\x1f".join(str(part) for part in parts))[:15], 16) / float(1 << 60)


def secondary_assignments(taxonomy: Taxonomy, category: str, count: int) -> list[str | None]:
    """Secondary category per positive index: overlaps take slots from the END of the range."""
    assigned: list[str | None] = [None] * count
    end = count
    for other, rate in taxonomy.category(category).overlaps.items():
        take = min(end, round(count * rate))
        for index in range(end - take, end):
            assigned[index] = other
        end -= take
    return assigned


def item_context(taxonomy: Taxonomy, category: str, kind: Kind, index: int, seed: int) -> Context:
    """Deterministic context per item; positives avoid audiences where the category is allowed."""
    audiences = list(taxonomy.contexts.audiences)
    if kind is Kind.POSITIVE:
        allowed = set(taxonomy.category(category).allowed_in)
        audiences = [audience for audience in audiences if audience not in allowed] or audiences
    surfaces = taxonomy.contexts.surfaces
    audience = audiences[int(stable_unit(seed, category, kind.value, index, "audience") * len(audiences))]
    surface = surfaces[int(stable_unit(seed, category, kind.value, index, "surface") * len(surfaces))]
    return Context(audience=audience, surface=surface)


def plan_category(taxonomy: Taxonomy, category: str, counts: GenerationCounts, seed: int) -> list[ItemSpec]:
    """Every item to generate for `category`, in a stable order."""
    taxonomy.category(category)  # unknown name -> clear error
    items: list[ItemSpec] = []
    for kind, count_field in _KIND_COUNT_FIELD.items():
        count = getattr(counts, count_field)
        secondaries = secondary_assignments(taxonomy, category, count) if kind is Kind.POSITIVE else [None] * count
        for index in range(count):
            context = item_context(taxonomy, category, kind, index, seed)
            items.append(ItemSpec(category, kind, index, context, secondaries[index]))
    return items


def chunk_requests(items: list[ItemSpec], size: int) -> Iterator[GenerationRequest]:
    """Group consecutive items with the same kind and secondary into requests of at most `size`."""
    group: list[ItemSpec] = []
    chunk = 0

    def flush() -> Iterator[GenerationRequest]:
        nonlocal chunk
        if group:
            first = group[0]
            yield GenerationRequest(first.category, first.kind, first.secondary, tuple(group), chunk)
            chunk += 1
            group.clear()

    for item in items:
        if (group and (item.kind, item.secondary) != (group[0].kind, group[0].secondary)) or len(group) >= size:
            yield from flush()
        group.append(item)
    yield from flush()
