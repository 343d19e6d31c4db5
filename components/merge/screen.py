"""Screening of generated negatives before they are trained on
(one poisoned seed once made 200 toxic 'negatives': docs/lessons.md#poisoned-seed).

A negative that shows positive signals is quarantined with the reason, not silently
kept. Only *generated* negatives are screened: the screens catch a poisoned generator
prior, and a human-labelled row (public set, import) is ground truth, not a guess.
Only categories a record knows as negative are screened (partial labels: an unknown
category is no claim). Categories allowed in the record's audience are ignored there
(an adult-area text may be adult content). Two screeners share the `Screener` protocol:
keywords (cheap, catches seeds that carry a category's signals) and the previous
model's scores (catches the coercion that uses no listed signal: log Exp 29's tribute seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tiergate.components.merge.dedupe import Quarantined
from tiergate.errors import InputDataError
from tiergate.records import Kind, LabelState, Record
from tiergate.taxonomy import Taxonomy

# Sources whose labels a person gave: never screened as generator output.
HUMAN_LABELLED_SOURCES = frozenset({"public", "human", "import"})


class Screener(Protocol):
    name: str

    def reasons(self, records: Sequence[Record]) -> dict[int, str]:
        """Index of each suspicious record -> why."""
        ...


def screened_negative(record: Record) -> bool:
    """A generated record with no positive label: what a poisoned seed would have produced."""
    return not record.labels and record.source.generator not in HUMAN_LABELLED_SOURCES


def known_negatives(taxonomy: Taxonomy, record: Record, names: Sequence[str]) -> list[str]:
    """`names` the record labels negative, minus those allowed in its audience."""
    return [
        name
        for name in names
        if record.label_state(name) is LabelState.NEGATIVE and record.context.audience not in taxonomy.category(name).allowed_in
    ]


class KeywordScreener:
    """Quarantine negatives matching positive signals: own category for hard negatives, any for innocuous."""

    name = "keyword"

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy

    def candidates(self, record: Record) -> list[str]:
        """Categories whose signals this negative must not carry (a hard negative shares words with its neighbours)."""
        own = record.source.category
        names = self.taxonomy.labels if record.source.kind is Kind.INNOCUOUS or own is None else [own]
        return known_negatives(self.taxonomy, record, names)

    def reasons(self, records: Sequence[Record]) -> dict[int, str]:
        found = {}
        for index, record in enumerate(records):
            if not screened_negative(record):
                continue
            for name in self.candidates(record):
                hits = self.taxonomy.category(name).matching_signals(record.text)
                if hits:
                    found[index] = f"{self.name}: {record.source.kind.value} shows {name} signals {hits}"
                    break
        return found


class PreviousModelScreener:
    """Quarantine negatives the previous (served) model is confident belong to a category.

    Every known-negative category is checked, not only the seed's own: a generated negative is
    labelled safe for all of them, and the Exp 29 batch (a predatory_behavior hard negative)
    did its damage to harassment and ncii. Only confident calls count (`min_score`, from
    config): negatives the old model merely gets wrong near the boundary are the most useful
    training signal and stay in.
    """

    name = "previous-model"

    def __init__(self, taxonomy: Taxonomy, repository: Path, min_score: float, batch_size: int = 64):
        from tiergate.artifacts import RepositoryLayout
        from tiergate.inference import ModerationPipeline, ThresholdSet

        layout = RepositoryLayout(Path(repository))
        for path in (layout.classifier_onnx, layout.tokenizer_dir, layout.thresholds):
            if not path.exists():
                raise InputDataError(f"previous model: {repository} is not a model repository (missing {path.name})")
        self.taxonomy = taxonomy
        self.min_score = min_score
        self.pipeline = ModerationPipeline(
            layout.classifier_onnx,
            layout.tokenizer_dir,
            ThresholdSet.load(layout.thresholds, taxonomy.labels),
            batch_size,
        )

    def candidates(self, record: Record) -> list[str]:
        """The categories `record` is screened for: every known negative of a generated negative, else none."""
        return known_negatives(self.taxonomy, record, self.taxonomy.labels) if screened_negative(record) else []

    def reasons(self, records: Sequence[Record]) -> dict[int, str]:
        negatives = [index for index, record in enumerate(records) if self.candidates(record)]
        if not negatives:
            return {}
        scores = self.pipeline.classify([records[i].text for i in negatives], [records[i].context for i in negatives]).scores
        found = {}
        for row, index in enumerate(negatives):
            names = self.candidates(records[index])
            scored = [(float(scores[row, self.taxonomy.labels.index(name)]), name) for name in names]
            score, name = max(scored, default=(0.0, ""))
            if score >= self.min_score:
                found[index] = f"{self.name}: {records[index].source.kind.value} scored {score:.2f} for {name}"
        return found


def screen(records: Sequence[Record], screeners: Sequence[Screener]) -> tuple[list[Record], list[Quarantined]]:
    flagged: dict[int, str] = {}
    for screener in screeners:
        for index, reason in screener.reasons(records).items():
            flagged.setdefault(index, reason)
    kept = [record for index, record in enumerate(records) if index not in flagged]
    quarantined = [Quarantined(records[index], reason) for index, reason in sorted(flagged.items())]
    return kept, quarantined
