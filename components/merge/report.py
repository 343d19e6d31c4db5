"""The dataset report: what the model will be trained and judged on, in numbers.

Counts per category × split × kind × context, positive rate per label, min-support
warnings (log: csam had 4–5 test items and "passed" on noise), label co-occurrence,
known-label coverage per category and source (partial labels: a public set knows only
its own categories), quarantine and dedupe figures, the generators' shortfalls and refusals, and what the reviewers'
labels add (human_report.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from tiergate.components.merge.human_report import human_markdown
from tiergate.records import LabelState, Record, source_name
from tiergate.taxonomy import Taxonomy


def build_report(
    taxonomy: Taxonomy,
    splits: Mapping[str, Sequence[Record]],
    phases: Mapping[str, Sequence[Record]],
    stats: Mapping[str, Any],
    min_test_support: int,
) -> dict[str, Any]:
    per_category: dict[str, dict[str, Any]] = {}
    for name, tier in zip(taxonomy.labels, taxonomy.tier_vector(), strict=True):
        entry: dict[str, Any] = {"tier": tier}
        for split, records in splits.items():
            positives = [record for record in records if name in record.labels]
            entry[split] = {
                "positives": len(positives),
                "known": sum(1 for record in records if record.label_state(name) is not LabelState.UNKNOWN),
                "positive_rate": round(len(positives) / len(records), 6) if records else 0.0,
                "by_kind": dict(sorted(Counter(record.source.kind.value for record in positives).items())),
                "by_context": dict(sorted(Counter(str(record.context) for record in positives).items())),
                "negatives_from_category": sum(1 for record in records if not record.labels and record.source.category == name),
            }
        per_category[name] = entry
    low_support = [
        {"category": name, "test_positives": entry["test"]["positives"], "min_test_support": min_test_support}
        for name, entry in per_category.items()
        if entry["test"]["positives"] < min_test_support
    ]
    cooccurrence: Counter[str] = Counter()
    for records in splits.values():
        for record in records:
            for first, second in combinations(record.labels, 2):
                cooccurrence[f"{first}+{second}"] += 1
    return {
        "labels": taxonomy.labels,
        "taxonomy_sha256": taxonomy.labels_sha256,
        "totals": {split: len(records) for split, records in splits.items()},
        "phases": {phase: len(records) for phase, records in phases.items()},
        "by_kind": {
            split: dict(sorted(Counter(record.source.kind.value for record in records).items()))
            for split, records in splits.items()
        },
        "by_context": {
            split: dict(sorted(Counter(str(record.context) for record in records).items())) for split, records in splits.items()
        },
        "by_source": {
            split: dict(sorted(Counter(source_name(record) for record in records).items())) for split, records in splits.items()
        },
        "coverage": label_coverage(taxonomy, [record for records in splits.values() for record in records]),
        "multilabel_records": sum(1 for records in splits.values() for record in records if len(record.labels) > 1),
        "per_category": per_category,
        "low_support": low_support,
        "cooccurrence": dict(sorted(cooccurrence.items())),
        **stats,
    }


def label_coverage(taxonomy: Taxonomy, records: Sequence[Record]) -> dict[str, dict[str, dict[str, int]]]:
    """category -> source -> {positive, negative, unknown}: how much of each category's training signal is known."""
    coverage: dict[str, dict[str, Counter[str]]] = {name: defaultdict(Counter) for name in taxonomy.labels}
    for record in records:
        source = source_name(record)
        for name in taxonomy.labels:
            coverage[name][source][record.label_state(name).value] += 1
    return {
        name: {source: {state.value: counts[state.value] for state in LabelState} for source, counts in sorted(by_source.items())}
        for name, by_source in coverage.items()
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    lines = ["# tiergate dataset report", ""]
    for note in report.get("notes", []):
        lines.append(f"> **{note}**")
    lines += ["", f"Taxonomy sha256: `{report['taxonomy_sha256']}`", ""]
    lines += _table(
        ["split", "records", *sorted({k for v in report["by_kind"].values() for k in v})],
        [
            [
                split,
                total,
                *[report["by_kind"][split].get(kind, 0) for kind in sorted({k for v in report["by_kind"].values() for k in v})],
            ]
            for split, total in report["totals"].items()
        ],
    )
    lines += ["", "## Curriculum phases (train split)", ""]
    lines += _table(["phase", "records"], list(report["phases"].items()))
    lines += ["", "## Cleaning", ""]
    lines += _table(
        ["step", "count"],
        [
            ["exact duplicates removed", report["exact_duplicates"]],
            ["multi-label folds", report["folded_multilabel"]],
            ["near-duplicates removed", report["near_duplicates_removed"]],
            ["near-duplicate pairs with different labels (kept, review)", report["near_duplicate_label_conflicts"]],
            ["quarantined", report["quarantined"]],
            ["keyword co-labels added", report["keyword_colabels_added"]],
        ],
    )
    if report["quarantine_reasons"]:
        lines += ["", "Quarantine reasons:", ""]
        lines += [f"- {reason}: {count}" for reason, count in report["quarantine_reasons"].items()]
    if report.get("capped"):
        lines += ["", "Removed by the profile's caps (merge.caps):", ""]
        lines += [f"- {reason}: {count}" for reason, count in report["capped"].items()]
    lines += sources_markdown(report)
    lines += human_markdown(report)
    lines += ["", "## Per category", ""]
    rows = []
    for name, entry in report["per_category"].items():
        rows.append(
            [
                name,
                entry["tier"],
                entry["train"]["positives"],
                entry["val"]["positives"],
                entry["test"]["positives"],
                f"{entry['train']['positive_rate']:.3f}",
            ]
        )
    lines += _table(["category", "tier", "train +", "val +", "test +", "train rate"], rows)
    lines += coverage_markdown(report)
    if report["low_support"]:
        lines += ["", "## Min-support warnings", ""]
        lines += [
            f"- **{item['category']}**: {item['test_positives']} test positives < {item['min_test_support']}; "
            "its test metrics will be reported as not measurable"
            for item in report["low_support"]
        ]
    if report["generation_problems"]:
        lines += ["", "## Generation problems", ""]
        lines += [f"- {problem}" for problem in report["generation_problems"]]
    if report["cooccurrence"]:
        lines += ["", "## Label co-occurrence", ""]
        lines += _table(["pair", "records"], list(report["cooccurrence"].items()))
    return "\n".join(lines) + "\n"


def sources_markdown(report: Mapping[str, Any]) -> list[str]:
    """Records per source and split: how much each public set and generator contributes after cleaning and caps."""
    by_source = report.get("by_source") or {}
    sources = sorted({source for counts in by_source.values() for source in counts})
    if not sources:
        return []
    lines = ["", "## Sources", ""]
    rows = [
        [source, report.get("input_sources", {}).get(source, "-"), *[by_source[split].get(source, 0) for split in by_source]]
        for source in sources
    ]
    return lines + _table(["source", "after folding", *by_source], rows)


def coverage_markdown(report: Mapping[str, Any]) -> list[str]:
    """Known-label coverage: per category and source, positives / known records (unknown ones are never negatives)."""
    coverage = report.get("coverage") or {}
    sources = sorted({source for by_source in coverage.values() for source in by_source})
    if not sources:
        return []
    lines = ["", "## Known-label coverage (all splits)", ""]
    lines += [
        "Each cell: positives / records that know the label (known share). Unknown labels are masked in the loss, "
        "the thresholds and the metrics.",
        "",
    ]
    rows = []
    for name, by_source in coverage.items():
        cells = []
        for source in sources:
            counts = by_source.get(source, {"positive": 0, "negative": 0, "unknown": 0})
            known = counts["positive"] + counts["negative"]
            total = known + counts["unknown"]
            cells.append(f"{counts['positive']} / {known} ({known / total:.0%})" if total else "-")
        rows.append([name, *cells])
    return lines + _table(["category", *sources], rows)


def realised_overlaps(records: Sequence[Record]) -> dict[str, float]:
    """Share of each category's positives that carry each secondary label (vs configured rates)."""
    primary: Counter[str] = Counter()
    paired: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        category = record.source.category
        if category is None or category not in record.labels:
            continue
        primary[category] += 1
        for label in record.labels:
            if label != category:
                paired[category][label] += 1
    return {
        f"{category}->{other}": round(count / primary[category], 4)
        for category, counter in sorted(paired.items())
        for other, count in sorted(counter.items())
    }
