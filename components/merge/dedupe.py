"""Exact folding and near-duplicate removal.

Folding: records with the same normalised text *and* context become one record whose
labels are the union (multi-label folding). A negative whose exact text is also a
positive is a conflict: it is quarantined, never trained on as a negative.
Near-duplicates (MinHash LSH over character shingles) are dropped only when they
carry the same labels; near-copies with different labels are kept and counted,
because they are exactly the boundary cases a reviewer should see.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasketch import MinHash, MinHashLSH

from tiergate.formatting import reading_key
from tiergate.profiles import NearDuplicateSettings
from tiergate.records import Kind, LabelState, Record, normalise_text, record_sort_key


@dataclass
class Quarantined:
    record: Record
    reason: str


@dataclass
class FoldResult:
    records: list[Record]
    quarantined: list[Quarantined] = field(default_factory=list)
    exact_duplicates: int = 0
    folded_multilabel: int = 0


def fold_exact(records: Sequence[Record]) -> FoldResult:
    """Fold records the model reads as the same input in the same context (`reading_key`): a perturbation the
    normalisation undoes (`k i l l` -> `kill`) is its origin again, and would only weigh that text twice.

    Positives fold into one record carrying the union of their labels. A record without positives conflicts
    only where it *knows* one of those labels as negative (a public set that labels threats alone says nothing
    about hate speech); a conflicting record is quarantined, one that agrees adds what it knows: a category
    stays unknown only where every folded record leaves it unknown."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in sorted(records, key=record_sort_key):
        groups[(reading_key(record.text), str(record.context))].append(record)
    result = FoldResult(records=[])
    for members in groups.values():
        result.exact_duplicates += len(members) - 1
        positives = [record for record in members if record.labels]
        labels = sorted({label for record in positives for label in record.labels})
        agreeing = list(positives)
        for record in members:
            if record.labels:
                continue
            denied = [label for label in labels if record.label_state(label) is LabelState.NEGATIVE]
            if denied:
                result.quarantined.append(
                    Quarantined(record, f"conflict: same text and context is a positive for {', '.join(denied)}")
                )
                result.exact_duplicates -= 1
            else:
                agreeing.append(record)
        keeper = agreeing[0]
        unknown = set.intersection(*(set(record.unknown) for record in agreeing)) - set(labels)
        if positives and tuple(labels) != keeper.labels:
            result.folded_multilabel += 1
        if tuple(labels) != keeper.labels or tuple(sorted(unknown)) != keeper.unknown:
            keeper = keeper.model_copy(update={"labels": tuple(labels), "unknown": tuple(sorted(unknown))})
        result.records.append(keeper)
    result.records.sort(key=record_sort_key)
    return result


def _shingles(text: str, size: int) -> set[bytes]:
    normal = normalise_text(text)
    if len(normal) <= size:
        return {normal.encode("utf-8")}
    return {normal[i : i + size].encode("utf-8") for i in range(len(normal) - size + 1)}


@dataclass
class NearDuplicateResult:
    records: list[Record]
    removed: list[Record]
    conflicting_pairs: list[tuple[str, str]]


def remove_near_duplicates(records: Sequence[Record], settings: NearDuplicateSettings) -> NearDuplicateResult:
    """Drop later near-copies with identical labels and context; perturbations are exempt by design."""
    if not settings.enabled:
        return NearDuplicateResult(list(records), [], [])
    lsh = MinHashLSH(threshold=settings.threshold, num_perm=settings.num_perm)
    kept: list[Record] = []
    removed: list[Record] = []
    conflicts: list[tuple[str, str]] = []
    by_key: dict[str, Record] = {}
    for position, record in enumerate(records):
        if record.source.kind is Kind.PERTURBATION:
            kept.append(record)
            continue
        signature = MinHash(num_perm=settings.num_perm, seed=1)
        signature.update_batch(list(_shingles(record.text, settings.shingle_size)))
        duplicate_of = None
        for key in sorted(lsh.query(signature)):
            other = by_key[key]
            if other.context == record.context and other.id != record.id:
                if other.labels == record.labels and other.unknown == record.unknown:
                    duplicate_of = other
                    break
                conflicts.append((other.id, record.id))
        if duplicate_of is not None:
            removed.append(record)
            continue
        key = f"{position}"
        lsh.insert(key, signature)
        by_key[key] = record
        kept.append(record)
    return NearDuplicateResult(kept, removed, conflicts)
