"""Secondary labels from a category's phrase rules, applied to its generated positives.

The log's one surviving rule-based co-label (Exp 31): an anti_trans positive that uses a
dehumanisation phrase is hate speech too. It is configured per category
(`secondary_label_rules` in config/taxonomy.yaml) and applied here, when records are made,
so every later step sees one label set. Unlike the merge-time keyword co-labels (off by
default, docs/lessons.md#keyword-colabels), it only touches the category's own positives.
"""

from __future__ import annotations

from collections.abc import Sequence

from tiergate.records import Kind, Record
from tiergate.taxonomy import Taxonomy


def with_secondary_labels(taxonomy: Taxonomy, records: Sequence[Record]) -> list[Record]:
    """`records` with each positive's secondary-rule labels added (others unchanged, order kept)."""
    out = []
    for record in records:
        category = record.source.category
        if record.source.kind is not Kind.POSITIVE or category is None or category not in record.labels:
            out.append(record)
            continue
        extra = set(taxonomy.category(category).secondary_labels(record.text)) - set(record.labels)
        out.append(record.model_copy(update={"labels": tuple(sorted({*record.labels, *extra}))}) if extra else record)
    return out
