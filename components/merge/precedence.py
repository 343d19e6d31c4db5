"""Human labels first: where reviewers labelled a text, their label is the one merge keeps.

A record from the feedback store (source generator `human`, written by `tiergate feedback export`)
is people's reviewed judgement of that very text in that context; a generated record is a
template's guess and a public set's label answered another project's definitions. So inside a fold
group (the same text as the model reads it, in the same context) every category the reviewers know
decides: another record that says otherwise is overruled for that category — not quarantined — and
every overruled cell is reported with both sources. Human records that disagree with each other are
a dispute nobody has settled: all of them are quarantined, naming the categories and the items.

Only categories some record of the group labels positive can conflict (elsewhere every record
says negative or unknown), so no taxonomy is needed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from tiergate.feedback.export import GENERATOR as HUMAN
from tiergate.records import Kind, LabelState, Record, source_name

HUMAN_CONFLICT = "conflict between human labels"
_BOTH_WAYS = frozenset({LabelState.POSITIVE, LabelState.NEGATIVE})


def is_human(record: Record) -> bool:
    """A reviewed item from the feedback store (not a public set: those are people's labels for another task)."""
    return record.source.generator == HUMAN


@dataclass(frozen=True)
class HumanWin:
    """One category of one text where the reviewers' label overruled another source's."""

    category: str
    human: str  # the reviewers' label, kept: positive / negative
    other: str  # the other source's label, overruled
    record_id: str  # the overruled record (the folded record's id too, unless a disguise of its text folded onto it)
    context: str
    human_source: str  # the human record's prompt id (feedback:item:<id>)
    other_source: str  # the other record's source as the report names it (offline, public:davidson)
    other_prompt: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Precedence:
    """A fold group after precedence: what folds, what is quarantined and why, which cells the humans won."""

    members: list[Record]
    rejected: list[tuple[Record, str]] = field(default_factory=list)
    wins: list[HumanWin] = field(default_factory=list)


def _known(record: Record, category: str) -> LabelState | None:
    state = record.label_state(category)
    return None if state is LabelState.UNKNOWN else state


def apply_precedence(members: Sequence[Record]) -> Precedence:
    """Decide a fold group's conflicts involving human records (a group without one is returned as it is)."""
    humans = [record for record in members if is_human(record)]
    if not humans:
        return Precedence(list(members))
    candidates = sorted({label for record in members for label in record.labels})
    disputed = [name for name in candidates if {_known(human, name) for human in humans} >= _BOTH_WAYS]
    if disputed:
        items = ", ".join(sorted(human.source.prompt_id for human in humans))
        reason = f"{HUMAN_CONFLICT}: {', '.join(disputed)} [{items}]"
        return Precedence([record for record in members if not is_human(record)], [(human, reason) for human in humans])
    verdicts: dict[str, tuple[LabelState, Record]] = {}  # category -> the reviewers' label, and the first record saying it
    for name in candidates:
        for human in humans:
            state = _known(human, name)
            if state is not None:
                verdicts.setdefault(name, (state, human))
    result = Precedence(members=[])
    for record in members:
        if is_human(record):
            result.members.append(record)
            continue
        labels = set(record.labels)
        for name, (state, human) in sorted(verdicts.items()):
            mine = _known(record, name)
            if mine is None or mine is state:
                continue
            labels ^= {name}  # a known cell the other way round: flip it to the reviewers' label
            result.wins.append(
                HumanWin(
                    name,
                    state.value,
                    mine.value,
                    record.id,
                    str(record.context),
                    human.source.prompt_id,
                    source_name(record),
                    record.source.prompt_id,
                )
            )
        overruled = tuple(sorted(labels))
        result.members.append(record if overruled == record.labels else record.model_copy(update={"labels": overruled}))
    return result


def keeper_of(agreeing: Sequence[Record]) -> Record:
    """The record a fold group keeps (its source, kind and prompt): a human one where there is one, so the
    folded text is reported, capped and never screened as the reviewed item it is."""
    return next((record for record in agreeing if is_human(record)), agreeing[0])


def human_kind(record: Record) -> Record:
    """A human keeper that gained positives from another source is a positive, as the export names one
    (kind `positive`, category its first positive label); anything else is returned as it is."""
    if not is_human(record) or not record.labels or record.source.kind is Kind.POSITIVE:
        return record
    source = record.source.model_copy(update={"kind": Kind.POSITIVE, "category": record.labels[0]})
    return record.model_copy(update={"source": source})
