"""The merge step: generated/imported datasets → cleaned, split, phased training data.

Order matters and is fixed: verify inputs → (optional keyword co-labels) → fold exact
duplicates → screen negatives → remove near-duplicates → stable splits → phases → report.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tiergate.components.merge.dedupe import Quarantined, fold_exact, remove_near_duplicates
from tiergate.components.merge.report import build_report, realised_overlaps, render_markdown
from tiergate.components.merge.screen import KeywordScreener, Screener, screen
from tiergate.components.merge.splits import assign_splits
from tiergate.datasets import DatasetManifest, file_entry, load_manifest, write_manifest
from tiergate.errors import InputDataError
from tiergate.hashing import canonical_json, write_json
from tiergate.paths import project_path
from tiergate.profiles import Profile
from tiergate.records import Kind, Record, iter_jsonl, normalise_text, write_jsonl
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)


def apply_keyword_colabels(taxonomy: Taxonomy, records: Sequence[Record]) -> tuple[list[Record], int]:
    """Keyword co-label rules (off by default: label inflation hurts precision, docs/lessons.md#keyword-colabels)."""
    out, added = [], 0
    for record in records:
        category = record.source.category
        labels = set(record.labels)
        if category and category in labels:
            for rule in taxonomy.category(category).colabel_rules:
                text = record.text.lower()
                if rule.label not in labels and any(keyword.lower() in text for keyword in rule.keywords):
                    labels.add(rule.label)
                    added += 1
        out.append(
            record if tuple(sorted(labels)) == record.labels else record.model_copy(update={"labels": tuple(sorted(labels))})
        )
    return out, added


def _load_inputs(taxonomy: Taxonomy, inputs: Sequence[Path]) -> tuple[list[Record], list[DatasetManifest]]:
    if not inputs:
        raise InputDataError("merge needs at least one input dataset directory")
    records: list[Record] = []
    manifests = []
    for directory in inputs:
        manifest = load_manifest(Path(directory), taxonomy)
        manifests.append(manifest)
        for record in iter_jsonl(Path(directory) / "records.jsonl"):
            unknown = set(record.labels) - set(taxonomy.labels)
            if unknown:
                raise InputDataError(f"{directory}: record {record.id} has unknown labels {sorted(unknown)}")
            records.append(record)
    return records, manifests


def _write_quarantine(path: Path, quarantined: Sequence[Quarantined]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(quarantined, key=lambda item: (item.record.id, str(item.record.context), item.reason))
    with path.open("w", encoding="utf-8") as handle:
        for item in rows:
            handle.write(canonical_json({"reason": item.reason, "record": item.record.model_dump(mode="json")}) + "\n")
    return len(rows)


def exclude_vectors(records: Sequence[Record], vector_texts: set[str]) -> tuple[list[Record], list[Quarantined]]:
    """Regression vectors are the gate's exam: a training text equal to one would leak it."""
    kept, leaked = [], []
    for record in records:
        if normalise_text(record.text) in vector_texts:
            leaked.append(Quarantined(record, "eval leakage: text is a regression vector"))
        else:
            kept.append(record)
    return kept, leaked


def merge_datasets(
    taxonomy: Taxonomy,
    profile: Profile,
    inputs: Sequence[Path],
    out_dir: Path,
    screeners: Sequence[Screener] | None = None,
    regression_dir: Path | None = None,
) -> DatasetManifest:
    """Merge input datasets into `out_dir`; returns the merged dataset's manifest."""
    from tiergate.components.evaluate.regression import load_suites, vector_texts

    settings = profile.merge
    records, manifests = _load_inputs(taxonomy, inputs)
    records, leaked = exclude_vectors(
        records, vector_texts(load_suites(regression_dir or project_path(profile.evaluate.regression_dir), taxonomy))
    )
    log.info("merge: %d records from %d datasets", len(records), len(manifests))

    colabels_added = 0
    if settings.keyword_colabel_rules:
        records, colabels_added = apply_keyword_colabels(taxonomy, records)
    folded = fold_exact(records)
    screened, quarantined = screen(folded.records, screeners if screeners is not None else [KeywordScreener(taxonomy)])
    near = remove_near_duplicates(screened, settings.near_duplicate)
    kept = near.records
    log.info(
        "merge: %d kept (%d exact dups, %d near dups, %d quarantined)",
        len(kept),
        folded.exact_duplicates,
        len(near.removed),
        len(folded.quarantined) + len(quarantined),
    )

    splits = assign_splits(kept, settings.splits)
    phases = {
        phase: [record for record in splits["train"] if record.source.kind.value in kinds]
        for phase, kinds in settings.phases.items()
    }
    all_quarantined = leaked + folded.quarantined + quarantined
    generation_problems = [note for manifest in manifests for note in manifest.notes if not note.startswith("SMOKE-TEST")]
    smoke_test = any(manifest.smoke_test for manifest in manifests)
    stats: dict[str, Any] = {
        "inputs": len(manifests),
        "input_records": len(records),
        "exact_duplicates": folded.exact_duplicates,
        "folded_multilabel": folded.folded_multilabel,
        "near_duplicates_removed": len(near.removed),
        "near_duplicate_label_conflicts": len(near.conflicting_pairs),
        "quarantined": len(all_quarantined),
        "quarantine_reasons": dict(sorted(Counter(item.reason.split(" [")[0] for item in all_quarantined).items())),
        "keyword_colabels_added": colabels_added,
        "overlap_rates": {
            "configured": {f"{c.name}->{o}": r for c in taxonomy.categories for o, r in c.overlaps.items()},
            "realised": realised_overlaps([r for r in kept if r.source.kind is Kind.POSITIVE]),
        },
        "generation_problems": generation_problems,
        "smoke_test": smoke_test,
        "notes": (
            ["SMOKE-TEST DATA: built from the offline template generator; metrics on it say nothing about real-world quality."]
            if smoke_test
            else []
        ),
    }
    report = build_report(taxonomy, splits, phases, stats, settings.min_test_support)
    for item in report["low_support"]:
        log.warning(
            "min support: %s has %d test positives (< %d)", item["category"], item["test_positives"], item["min_test_support"]
        )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, subset in [*splits.items(), *phases.items()]:
        path = out_dir / f"{name}.jsonl"
        files[path.name] = file_entry(path, write_jsonl(path, subset))
    quarantine_path = out_dir / "quarantine.jsonl"
    files[quarantine_path.name] = file_entry(quarantine_path, _write_quarantine(quarantine_path, all_quarantined))
    write_json(out_dir / "report.json", report)
    (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    files["report.json"] = file_entry(out_dir / "report.json", 0)
    files["report.md"] = file_entry(out_dir / "report.md", 0)
    manifest = DatasetManifest(
        dataset="merged",
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.sha256,
        files=files,
        counts={"splits": report["totals"], "phases": report["phases"], "quarantined": len(all_quarantined)},
        config={
            "profile": profile.model_dump(mode="json"),
            "taxonomy_content_sha256": taxonomy.content_sha256,
            "inputs": sorted(manifest.dataset_sha256 for manifest in manifests),
        },
        smoke_test=smoke_test,
        notes=stats["notes"] + generation_problems,
    )
    write_manifest(out_dir, manifest)
    return manifest
