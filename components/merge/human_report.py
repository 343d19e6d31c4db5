"""The dataset report's "Human labels" section: what the reviewers' labels add to this dataset.

- per category and split, the human records (reviewed items, `tiergate feedback export`) whose
  reviewers labelled the category, and how many of them positive. Labels are partial: reviewers
  label a few categories, the rest stay unknown; a human record folded with a generated copy of
  its text also knows what the generator knew, which is not counted as the reviewers';
- the cells where a human label overruled another source, counted per category and listed with
  both sources;
- the human records quarantined because reviewers disagreed;
- where the export's report came with it, the reviewed items its agreement floor left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from tiergate.components.merge.dedupe import FoldResult
from tiergate.components.merge.feedback_input import ExportSummary
from tiergate.components.merge.precedence import is_human
from tiergate.records import Record
from tiergate.taxonomy import Taxonomy


def human_labels(
    taxonomy: Taxonomy,
    splits: Mapping[str, Sequence[Record]],
    folded: FoldResult,
    exports: Sequence[ExportSummary],
) -> dict[str, Any]:
    """The section as JSON (always present; zeros when no input held a reviewed item)."""
    humans = {split: [record for record in records if is_human(record)] for split, records in splits.items()}

    def reviewed(record: Record) -> frozenset[str]:
        unknown = folded.reviewer_unknown.get((record.id, str(record.context)), frozenset(record.unknown))
        return frozenset(taxonomy.labels) - unknown

    known = {split: [(record, reviewed(record)) for record in records] for split, records in humans.items()}
    per_category = {
        name: {
            split: {
                "positives": sum(1 for record, labelled in rows if name in labelled and name in record.labels),
                "known": sum(1 for _, labelled in rows if name in labelled),
            }
            for split, rows in known.items()
        }
        for name in taxonomy.labels
    }
    wins = folded.human_wins
    left_out: Counter[str] = Counter()
    for summary in exports:
        left_out.update(summary.left_out)
    return {
        "records": {split: len(records) for split, records in humans.items()},
        "per_category": per_category,
        "conflicts_won": dict(sorted(Counter(win.category for win in wins).items())),
        "conflicts": [win.as_dict() for win in sorted(wins, key=lambda w: (w.category, w.record_id, w.other_prompt))],
        "disputed_quarantined": folded.human_conflicts,
        "exports": [summary.model_dump(mode="json") for summary in exports],
        "left_out_by_export": dict(sorted(left_out.items())),
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def human_markdown(report: Mapping[str, Any]) -> list[str]:
    """The section in Markdown; nothing when no reviewed item came in, none was won or disputed, and no export was read."""
    section = report.get("human_labels") or {}
    if not (sum(section.get("records", {}).values()) or section.get("conflicts") or section.get("exports")):
        return []
    splits = list(section["records"])
    lines = ["", "## Human labels", ""]
    lines += [
        "Reviewed items from the feedback store (source `human`). Each cell: positives / records that know the "
        "category (reviewers label a few categories; the others stay unknown). A human label wins over any other "
        "source's on the same text and context.",
        "",
    ]
    rows = []
    for name, by_split in section["per_category"].items():
        won = section["conflicts_won"].get(name, 0)
        if won or any(by_split[split]["known"] for split in splits):
            rows.append([name, *[f"{by_split[split]['positives']} / {by_split[split]['known']}" for split in splits], won])
    lines += _table(["category", *splits, "conflicts won"], rows)
    lines += ["", f"Human records per split: {', '.join(f'{split} {count}' for split, count in section['records'].items())}."]
    if section["conflicts"]:
        lines += ["", "Conflicts the human label won (the other source's label overruled):", ""]
        lines += [
            f"- `{item['record_id']}` ({item['context']}) {item['category']}: {item['human_source']} says {item['human']}, "
            f"{item['other_source']} `{item['other_prompt']}` said {item['other']}"
            for item in section["conflicts"]
        ]
    if section["disputed_quarantined"]:
        lines += ["", f"Human records quarantined because reviewers' items disagree: {section['disputed_quarantined']}."]
    for summary in section["exports"]:
        reasons = ", ".join(f"{reason.replace('_', ' ')} {count}" for reason, count in sorted(summary["left_out"].items()))
        lines += [
            "",
            f"Feedback export: {summary['exported']} of {summary['reviewed_items']} reviewed items exported "
            f"(agreement floor {summary['min_agreement']}); left out: {reasons or 'none'}.",
        ]
    return lines
