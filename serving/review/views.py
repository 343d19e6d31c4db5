"""What the review pages show, computed from the taxonomy and the store: plain data for the templates
(which escape everything), no HTTP here, so each piece is testable on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiergate.client import Classification
from tiergate.feedback.agreement import CategoryKappa, category_kappa, item_agreement
from tiergate.feedback.store import ItemView, ReviewedItem
from tiergate.records import LabelState
from tiergate.taxonomy import Taxonomy

POSITIVE, NEGATIVE, UNKNOWN = LabelState.POSITIVE.value, LabelState.NEGATIVE.value, "unknown"
STATES = (POSITIVE, NEGATIVE, UNKNOWN)


@dataclass(frozen=True)
class CategoryRow:
    name: str
    hint: str  # definition and boundary notes: the row's hover text
    state: str = UNKNOWN  # prefilled choice on the queue page
    score: float | None = None
    flagged: bool = False


@dataclass(frozen=True)
class TierGroup:
    number: int
    name: str
    description: str
    rows: list[CategoryRow] = field(default_factory=list)


def hint(taxonomy: Taxonomy, name: str) -> str:
    category = taxonomy.category(name)
    return f"{category.definition.strip()}\n\nNot this: {category.not_in.strip()}"


def tier_groups(
    taxonomy: Taxonomy,
    states: Mapping[str, str] | None = None,
    scores: Mapping[str, float] | None = None,
    flags: Sequence[str] = (),
) -> list[TierGroup]:
    """The categories grouped by tier (tier 1, the most severe, first), in model order within a tier."""
    states, scores, flagged = states or {}, scores or {}, set(flags)
    groups = {
        number: TierGroup(number, policy.name.replace("_", " "), policy.description)
        for number, policy in sorted(taxonomy.tiers.items())
    }
    for category in taxonomy.categories:
        groups[category.tier].rows.append(
            CategoryRow(
                category.name,
                hint(taxonomy, category.name),
                states.get(category.name, UNKNOWN),
                scores.get(category.name),
                category.name in flagged,
            )
        )
    return [group for group in groups.values() if group.rows]


def routing(taxonomy: Taxonomy, max_tier: int) -> str:
    """The routing tier a classification's MAX_TIER names, in words."""
    if max_tier <= 0:
        return "no route (nothing flagged)"
    policy = taxonomy.tiers.get(max_tier)
    return f"T{max_tier} {policy.name.replace('_', ' ')}" if policy else f"T{max_tier}"


def model_decisions(taxonomy: Taxonomy, predicted: Mapping[str, Any]) -> dict[str, str]:
    """What the model said, as review labels: a flagged category positive, one it scored and did not
    flag negative. Empty when the item carries no prediction (then there is nothing to confirm)."""
    scores = predicted.get("scores") or {}
    flags = set(predicted.get("flags") or [])
    decided = {name: NEGATIVE for name in scores} | {name: POSITIVE for name in flags}
    return {name: decided[name] for name in taxonomy.labels if name in decided}


def try_result(taxonomy: Taxonomy, result: Classification) -> dict[str, Any]:
    return {
        "routing": routing(taxonomy, result.max_tier),
        "flags": list(result.flags),
        "windows": result.windows,
        "groups": tier_groups(taxonomy, scores=result.scores, flags=result.flags),
    }


def queue_item(taxonomy: Taxonomy, item: ItemView) -> dict[str, Any]:
    decisions = model_decisions(taxonomy, item.predicted)
    scores = item.predicted.get("scores") or {}
    flags = item.predicted.get("flags") or []
    return {
        "item": item,
        "can_confirm": bool(decisions),
        "model_flags": sorted(name for name, state in decisions.items() if state == POSITIVE),
        "groups": tier_groups(taxonomy, states=decisions, scores=scores, flags=flags),
    }


def form_labels(taxonomy: Taxonomy, form: Mapping[str, str]) -> dict[str, str]:
    """The labels a reviewer chose: fields `label.<category>` set to positive or negative (unknown: left
    out). Names and values go to the store, which refuses anything the taxonomy does not know."""
    labels: dict[str, str] = {}
    for key, value in form.items():
        if key.startswith("label.") and value != UNKNOWN:
            labels[key.removeprefix("label.")] = value
    return labels


@dataclass(frozen=True)
class Disagreement:
    item: ItemView
    reviewers: list[str]
    categories: list[tuple[str, list[str]]]  # disputed category, each reviewer's label in reviewer order


def disagreements(reviewed: Sequence[ReviewedItem]) -> list[Disagreement]:
    """Items whose reviewers labelled a category differently, newest item first."""
    found = []
    for entry in reviewed:
        labels = [review.labels for review in entry.reviews]
        disputed = item_agreement(labels).disputed
        if not disputed:
            continue
        rows = [(name, [given.get(name, UNKNOWN) for given in labels]) for name in disputed]
        found.append(Disagreement(entry.item, [review.reviewer for review in entry.reviews], rows))
    return sorted(found, key=lambda entry: entry.item.id, reverse=True)


@dataclass(frozen=True)
class KappaRow:
    name: str
    hint: str
    value: CategoryKappa


def kappa_table(taxonomy: Taxonomy, reviewed: Sequence[ReviewedItem]) -> dict[str, Any]:
    """Cohen's kappa per category (first two reviews of each item), grouped by tier, with the counts behind it."""
    table = category_kappa([[review.labels for review in entry.reviews] for entry in reviewed], taxonomy.labels)
    groups = []
    for number, policy in sorted(taxonomy.tiers.items()):
        rows = [
            KappaRow(category.name, hint(taxonomy, category.name), table[category.name])
            for category in taxonomy.categories
            if category.tier == number
        ]
        if rows:
            groups.append({"number": number, "name": policy.name.replace("_", " "), "rows": rows})
    return {
        "groups": groups,
        "reviewed": len(reviewed),
        "double": sum(len(entry.reviews) >= 2 for entry in reviewed),
        "measured": sum(value.kappa is not None for value in table.values()),
    }
