"""Exact folding and near-duplicate removal.

Folding: records with the same normalised text *and* context become one record whose
labels are the union (multi-label folding). A negative whose exact text is also a
positive is a conflict: it is quarantined, never trained on as a negative — except where
reviewers labelled the text (feedback store): their label wins (precedence.py).
Near-duplicates (MinHash LSH over character shingles) are dropped only when they
carry the same labels; near-copies with different labels are kept and counted,
because they are exactly the boundary cases a reviewer should see.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasketch import MinHash, MinHashLSH

from tiergate.components.merge.precedence import HumanWin, apply_precedence, human_kind, is_human, keeper_of
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
    human_wins: list[HumanWin] = field(default_factory=list)  # cells where the reviewers' label overruled another source
    human_conflicts: int = 0  # human records quarantined because reviewers disagreed on the same text
    # (id, context) of each folded record holding a reviewed item -> the categories no reviewer labelled: what the
    # report counts as the reviewers' (a folded record also knows what the generator knew of the text)
    reviewer_unknown: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)


def fold_exact(records: Sequence[Record]) -> FoldResult:
    """Fold records the model reads as the same input in the same context (`reading_key`): a perturbation the
    normalisation undoes (`k i l l` -> `kill`) is its origin again, and would only weigh that text twice.

    Positives fold into one record carrying the union of their labels. A record without positives conflicts
    only where it *knows* one of those labels as negative (a public set that labels threats alone says nothing
    about hate speech); a conflicting record is quarantined, one that agrees adds what it knows: a category
    stays unknown only where every folded record leaves it unknown.

    Human labels come first (`precedence.apply_precedence`): another source's label on a category the
    reviewers know is overruled and reported, not quarantined, and the folded record keeps the human
    record's source; human records that disagree with each other are all quarantined."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in sorted(records, key=record_sort_key):
        groups[(reading_key(record.text), str(record.context))].append(record)
    result = FoldResult(records=[])
    for group in groups.values():
        decided = apply_precedence(group)
        result.quarantined += [Quarantined(record, reason) for record, reason in decided.rejected]
        result.human_conflicts += len(decided.rejected)
        result.human_wins += decided.wins
        members = decided.members
        if not members:
            continue
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
        keeper = keeper_of(agreeing)
        unknown = set.intersection(*(set(record.unknown) for record in agreeing)) - set(labels)
        if positives and tuple(labels) != keeper.labels:
            result.folded_multilabel += 1
        if tuple(labels) != keeper.labels or tuple(sorted(unknown)) != keeper.unknown:
            keeper = keeper.model_copy(update={"labels": tuple(labels), "unknown": tuple(sorted(unknown))})
        reviewed = [frozenset(record.unknown) for record in members if is_human(record)]
        if reviewed:
            result.reviewer_unknown[(keeper.id, str(keeper.context))] = frozenset.intersection(*reviewed)
        result.records.append(human_kind(keeper))
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
    """Drop later near-copies with identical labels and context; perturbations are exempt by design, and so
    are reviewed items (human records): each is a judgement someone made about that very text."""
    if not settings.enabled:
        return NearDuplicateResult(list(records), [], [])
    lsh = MinHashLSH(threshold=settings.threshold, num_perm=settings.num_perm)
    kept: list[Record] = []
    removed: list[Record] = []
    conflicts: list[tuple[str, str]] = []
    by_key: dict[str, Record] = {}
    for position, record in enumerate(records):
        if record.source.kind is Kind.PERTURBATION or is_human(record):
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
