"""Screening of negatives before they are trained on
(one poisoned seed once made 200 toxic 'negatives': docs/lessons.md#poisoned-seed).

A negative that shows positive signals is quarantined with the reason, not silently
kept. Signals of categories allowed in the record's audience are ignored there (an
adult-area text may be adult content). A model-based screener (the previous model's
scores) plugs in through the same `Screener` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tiergate.components.merge.dedupe import Quarantined
from tiergate.records import Kind, Record
from tiergate.taxonomy import Taxonomy


class Screener(Protocol):
    name: str

    def reasons(self, records: Sequence[Record]) -> dict[int, str]:
        """Index of each suspicious record -> why."""
        ...


class KeywordScreener:
    """Quarantine negatives matching positive signals: own category for hard negatives, any for innocuous."""

    name = "keyword"

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy

    def candidates(self, record: Record) -> list[str]:
        """Categories whose positives this negative must not look like (allowed-audience categories excluded)."""
        own = record.source.category
        names = self.taxonomy.labels if record.source.kind is Kind.INNOCUOUS or own is None else [own]
        return [name for name in names if record.context.audience not in self.taxonomy.category(name).allowed_in]

    def reasons(self, records: Sequence[Record]) -> dict[int, str]:
        found = {}
        for index, record in enumerate(records):
            if record.labels:
                continue
            for name in self.candidates(record):
                hits = self.taxonomy.category(name).matching_signals(record.text)
                if hits:
                    found[index] = f"{self.name}: {record.source.kind.value} shows {name} signals {hits}"
                    break
        return found


class PreviousModelScreener:
    """Quarantine negatives the previous (served) model is confident belong to a category.

    Only confident calls count (`min_score`, from config): negatives the old model merely gets
    wrong near the boundary are the most useful training signal and stay in.
    """

    name = "previous-model"

    def __init__(self, taxonomy: Taxonomy, repository: Path, min_score: float, batch_size: int = 64):
        from tiergate.artifacts import RepositoryLayout
        from tiergate.inference import ModerationPipeline, ThresholdSet

        self.taxonomy = taxonomy
        self.min_score = min_score
        layout = RepositoryLayout(Path(repository))
        self.pipeline = ModerationPipeline(
            layout.classifier_onnx,
            layout.tokenizer_dir,
            ThresholdSet.load(layout.thresholds, taxonomy.labels),
            batch_size,
        )
        self.keywords = KeywordScreener(taxonomy)

    def reasons(self, records: Sequence[Record]) -> dict[int, str]:
        negatives = [index for index, record in enumerate(records) if not record.labels]
        if not negatives:
            return {}
        scores = self.pipeline.classify([records[i].text for i in negatives], [records[i].context for i in negatives]).scores
        found = {}
        for row, index in enumerate(negatives):
            for name in self.keywords.candidates(records[index]):
                score = float(scores[row, self.taxonomy.labels.index(name)])
                if score >= self.min_score:
                    found[index] = f"{self.name}: {records[index].source.kind.value} scored {score:.2f} for {name}"
                    break
        return found


def screen(records: Sequence[Record], screeners: Sequence[Screener]) -> tuple[list[Record], list[Quarantined]]:
    flagged: dict[int, str] = {}
    for screener in screeners:
        for index, reason in screener.reasons(records).items():
            flagged.setdefault(index, reason)
    kept = [record for index, record in enumerate(records) if index not in flagged]
    quarantined = [Quarantined(records[index], reason) for index, reason in sorted(flagged.items())]
    return kept, quarantined
