"""pos_weight per label: neg/pos, capped by the label's tier cap — from the taxonomy, never a literal.

Uncapped weights (~24:1) collapsed precision, and so did a T2 cap raised to 15
(docs/lessons.md#pos-weight-cap); a literal in code once silently overrode config
(docs/lessons.md#hardcoded-cap-overrode-config). The cap is read here from
`tiers.<n>.pos_weight_cap` and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

from tiergate.records import Record
from tiergate.taxonomy import Taxonomy


def label_counts(records: Sequence[Record], labels: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(labels, 0)
    for record in records:
        for label in record.labels:
            counts[label] += 1
    return counts


def compute_pos_weight(records: Sequence[Record], taxonomy: Taxonomy) -> dict[str, float]:
    """neg/pos per label, capped at the tier's cap; a label with no positives gets the cap."""
    total = len(records)
    weights = {}
    for name, positives in label_counts(records, taxonomy.labels).items():
        cap = taxonomy.tier_of(name).pos_weight_cap
        weights[name] = cap if positives == 0 else min(cap, (total - positives) / positives)
    return weights
