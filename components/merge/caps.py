"""Per-source and per-category caps: one large public set must not drown the others.

Records are visited in a stable order (a hash of the text id with the split salt, so the kept
subset does not depend on input order and is unrelated to which split a text lands in); a record
is kept while its source is under its cap and every category it is positive for is under the
per-category cap for that source. Every record a cap removes is counted, by source and reason.

Reviewed items (source `human`, the feedback store) are never capped away unless the profile names
`human` in `per_source`: a default cap is sized for public sets of thousands of rows, not for the
few hundred texts people labelled. Named, `human` is capped like any other source (its source cap
and the per-category cap).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tiergate.components.merge.precedence import HUMAN
from tiergate.hashing import sha256_text
from tiergate.profiles import CapSettings
from tiergate.records import Record, source_name


@dataclass
class CapResult:
    kept: list[Record]
    removed: Counter[str] = field(default_factory=Counter)  # "<source>: <reason>" -> records

    def as_report(self) -> dict[str, int]:
        return dict(sorted(self.removed.items()))


def _order(record: Record, salt: str) -> str:
    return sha256_text(f"{salt}:{record.id}:{record.context}")


def limits(caps: CapSettings, source: str) -> tuple[int | None, int | None]:
    """(records cap, per-category positives cap) for one source; none for `human` unless the profile names it."""
    if source == HUMAN and source not in caps.per_source:
        return None, None
    return caps.per_source.get(source, caps.default_per_source), caps.per_category


def apply_caps(records: Sequence[Record], caps: CapSettings, salt: str) -> CapResult:
    """Keep records within the caps; the survivors keep their input order."""
    if not caps.per_source and caps.default_per_source is None and caps.per_category is None:
        return CapResult(list(records))
    per_source: Counter[str] = Counter()
    per_category: Counter[tuple[str, str]] = Counter()
    result = CapResult(kept=[])
    keep: set[int] = set()
    for index in sorted(range(len(records)), key=lambda position: _order(records[position], salt)):
        record = records[index]
        source = source_name(record)
        limit, cap = limits(caps, source)
        if limit is not None and per_source[source] >= limit:
            result.removed[f"{source}: source cap {limit}"] += 1
            continue
        full = [name for name in record.labels if cap is not None and per_category[(source, name)] >= cap]
        if full:
            result.removed[f"{source}: category cap {cap} ({full[0]})"] += 1
            continue
        keep.add(index)
        per_source[source] += 1
        for name in record.labels:
            per_category[(source, name)] += 1
    result.kept = [record for index, record in enumerate(records) if index in keep]
    return result
