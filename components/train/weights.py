"""pos_weight per label: neg/pos, capped by the label's tier cap — from the taxonomy, never a literal.

Uncapped weights (~24:1) collapsed precision, and so did a T2 cap raised to 15
(docs/lessons.md#pos-weight-cap); a literal in code once silently overrode config
(docs/lessons.md#hardcoded-cap-overrode-config). The cap is read here from
`tiers.<n>.pos_weight_cap` and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

from tiergate.records import LabelState, Record
from tiergate.taxonomy import Taxonomy


def label_counts(records: Sequence[Record], labels: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(positives, known negatives) per label: a record that leaves a label unknown counts as neither."""
    counts = {name: [0, 0] for name in labels}
    for record in records:
        for name in labels:
            state = record.label_state(name)
            if state is LabelState.POSITIVE:
                counts[name][0] += 1
            elif state is LabelState.NEGATIVE:
                counts[name][1] += 1
    return {name: (positives, negatives) for name, (positives, negatives) in counts.items()}


def compute_pos_weight(records: Sequence[Record], taxonomy: Taxonomy) -> dict[str, float]:
    """known neg/pos per label, between 1 and the tier's cap; a label with no positives gets the cap.

    The floor of 1: a weight exists to lift rare positives, never to silence them (a category whose
    rows are mostly positives, or whose negatives are all unknown, would otherwise get weight ~0)."""
    weights = {}
    for name, (positives, negatives) in label_counts(records, taxonomy.labels).items():
        cap = taxonomy.tier_of(name).pos_weight_cap
        weights[name] = cap if positives == 0 else min(cap, max(1.0, negatives / positives))
    return weights
