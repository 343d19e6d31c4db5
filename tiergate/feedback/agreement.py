"""How much reviewers agree: per item (the share of doubly-labelled categories they agree on) and
per category (Cohen's kappa over the items two reviewers both labelled it on).

An item's consensus keeps a category only when every reviewer who labelled it said the same thing;
a disputed category becomes unknown again (conflicting human evidence is no label).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sklearn.metrics import cohen_kappa_score

STATES = ["negative", "positive"]


@dataclass(frozen=True)
class ItemAgreement:
    reviewers: int
    compared: int  # categories labelled by two or more reviewers
    agreed: int  # of those, the ones they all labelled alike
    consensus: dict[str, str]  # category -> positive/negative, where no reviewer disagrees
    disputed: tuple[str, ...]

    @property
    def agreement(self) -> float | None:
        """agreed / compared; None when no category was labelled twice (a single review measures nothing)."""
        return self.agreed / self.compared if self.compared else None


def item_agreement(reviews: Sequence[Mapping[str, str]]) -> ItemAgreement:
    states: dict[str, list[str]] = defaultdict(list)
    for labels in reviews:
        for name, state in labels.items():
            states[name].append(state)
    compared = agreed = 0
    consensus: dict[str, str] = {}
    disputed = []
    for name in sorted(states):
        given = states[name]
        if len(given) >= 2:
            compared += 1
        if len(set(given)) == 1:
            consensus[name] = given[0]
            agreed += len(given) >= 2
        else:
            disputed.append(name)
    return ItemAgreement(len(reviews), compared, agreed, consensus, tuple(disputed))


@dataclass(frozen=True)
class CategoryKappa:
    pairs: int  # items on which two reviewers both labelled the category
    observed: float | None  # share of those pairs that agree
    kappa: float | None  # None: fewer than two pairs, or both reviewers gave one and the same answer throughout

    def as_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "observed": self.observed, "kappa": self.kappa}


def category_kappa(items: Iterable[Sequence[Mapping[str, str]]], categories: Sequence[str]) -> dict[str, CategoryKappa]:
    """Cohen's kappa per category from each item's first two reviews (in review order)."""
    pairs: dict[str, tuple[list[str], list[str]]] = {name: ([], []) for name in categories}
    for reviews in items:
        if len(reviews) < 2:
            continue
        first, second = reviews[0], reviews[1]
        for name in categories:
            if name in first and name in second:
                pairs[name][0].append(first[name])
                pairs[name][1].append(second[name])
    return {name: _kappa(*pairs[name]) for name in categories}


def _kappa(a: list[str], b: list[str]) -> CategoryKappa:
    if not a:
        return CategoryKappa(0, None, None)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    if len(a) < 2:
        return CategoryKappa(len(a), observed, None)
    if len(set(a) | set(b)) == 1:
        return CategoryKappa(len(a), observed, None)  # both raters constant and alike: kappa is 0/0
    value = float(cohen_kappa_score(a, b, labels=STATES))
    return CategoryKappa(len(a), observed, None if math.isnan(value) else value)
