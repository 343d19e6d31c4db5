"""The merge step: generated, public and imported datasets → cleaned, split, phased training data.

Order matters and is fixed: verify inputs → exclude regression vectors and near-copies →
(optional keyword co-labels) → fold exact duplicates across every source (human labels first) →
screen negatives → remove near-duplicates → per-source / per-category caps → stable splits →
phases → report.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiergate.artifacts import DATASET_REPORT, DATASET_REPORT_MD, QUARANTINE, RECORDS, phase_file
from tiergate.components.merge.caps import CapResult, apply_caps
from tiergate.components.merge.dedupe import FoldResult, NearDuplicateResult, Quarantined, fold_exact, remove_near_duplicates
from tiergate.components.merge.feedback_input import ExportSummary, read_export_summary
from tiergate.components.merge.human_report import human_labels
from tiergate.components.merge.leakage import exclude_vectors
from tiergate.components.merge.precedence import is_human
from tiergate.components.merge.report import build_report, realised_overlaps, render_markdown
from tiergate.components.merge.screen import KeywordScreener, Screener, screen
from tiergate.components.merge.splits import SPLIT_FILES, assign_splits
from tiergate.datasets import DatasetManifest, FileEntry, file_entry, load_manifest, write_manifest
from tiergate.errors import InputDataError
from tiergate.feedback.export import DATASET as FEEDBACK_DATASET
from tiergate.hashing import canonical_json, write_json
from tiergate.outputs import atomic_output
from tiergate.paths import project_path
from tiergate.profiles import MergeSettings, Profile, RecordKindName
from tiergate.records import Kind, Record, iter_jsonl, source_name, write_jsonl
from tiergate.regression import load_suites
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)
SMOKE_TEST_NOTE = (
    "SMOKE-TEST DATA: built from the offline template generator; metrics on it say nothing about real-world quality."
)


@dataclass(frozen=True)
class Cleaned:
    """The records that survive cleaning, and what each cleaning stage removed or added."""

    kept: list[Record]
    quarantined: list[Quarantined]  # exact-fold conflicts, then screened negatives
    folded: FoldResult
    near: NearDuplicateResult
    colabels_added: int
    capped: CapResult


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
        refuse_evaluation_sets(Path(directory), manifest)
        if RECORDS not in manifest.files:
            raise InputDataError(
                f"{directory} is a {manifest.dataset} dataset without {RECORDS}; merge reads generated or imported ones"
            )
        manifests.append(manifest)
        for record in iter_jsonl(Path(directory) / RECORDS):
            strangers = (set(record.labels) | set(record.unknown)) - set(taxonomy.labels)
            if strangers:
                raise InputDataError(f"{directory}: record {record.id} names categories not in the taxonomy: {sorted(strangers)}")
            if is_human(record) and manifest.dataset != FEEDBACK_DATASET:
                raise InputDataError(
                    f"{directory}: record {record.id} claims reviewers' labels (source {record.source.generator!r}) in a "
                    f"{manifest.dataset} dataset; human labels come only from `tiergate feedback export`"
                )
            records.append(record)
    return records, manifests


def export_summaries(inputs: Sequence[Path], manifests: Sequence[DatasetManifest]) -> list[ExportSummary]:
    """The export reports of the feedback inputs that carry one (the report's left-out counts)."""
    found = [
        read_export_summary(Path(directory))
        for directory, manifest in zip(inputs, manifests, strict=True)
        if manifest.dataset == FEEDBACK_DATASET
    ]
    return [summary for summary in found if summary is not None]


def refuse_evaluation_sets(directory: Path, manifest: DatasetManifest) -> None:
    """An out-of-distribution set (XSTest, SimpleSafetyTests) measures the model; trained on, it measures nothing."""
    datasets = manifest.config.get("datasets") or {}
    evaluation = sorted(name for name, entry in datasets.items() if isinstance(entry, dict) and entry.get("role") == "evaluation")
    if manifest.dataset == "evaluation" or evaluation:
        names = ", ".join(evaluation) or "an evaluation-only set"
        raise InputDataError(f"{directory} holds {names}: evaluation-only sets are never trained on (leave it out of merge)")


def warn_unused_caps(settings: MergeSettings, records: Sequence[Record]) -> None:
    """A cap naming a source no input has caps nothing: most likely a typo (public:davidsn), so say so."""
    present = {source_name(record) for record in records}
    for name in sorted(set(settings.caps.per_source) - present):
        log.warning("merge.caps.per_source names %r, which no input holds (sources here: %s)", name, ", ".join(sorted(present)))


def _write_quarantine(path: Path, quarantined: Sequence[Quarantined]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(quarantined, key=lambda item: (item.record.id, str(item.record.context), item.reason))
    with path.open("w", encoding="utf-8") as handle:
        for item in rows:
            handle.write(canonical_json({"reason": item.reason, "record": item.record.model_dump(mode="json")}) + "\n")
    return len(rows)


def merge_datasets(
    taxonomy: Taxonomy,
    profile: Profile,
    inputs: Sequence[Path],
    out_dir: Path,
    screeners: Sequence[Screener] | None = None,
    regression_dir: Path | None = None,
    overwrite: bool = False,
) -> DatasetManifest:
    """Merge input datasets into `out_dir` (written whole, see `tiergate.outputs`); returns the merged manifest."""
    settings = profile.merge
    records, manifests = _load_inputs(taxonomy, inputs)
    warn_unused_caps(settings, records)
    suites = load_suites(regression_dir or project_path(profile.evaluate.regression_dir), taxonomy)
    records, leaked = exclude_vectors(records, suites, settings.leakage)
    log.info(
        "merge: %d records from %d datasets (%d more quarantined as regression-vector leaks)",
        len(records),
        len(manifests),
        len(leaked),
    )
    cleaned = clean(taxonomy, settings, records, screeners if screeners is not None else [KeywordScreener(taxonomy)])
    splits = assign_splits(cleaned.kept, settings.splits)
    phases = build_phases(splits["train"], settings.phases)
    quarantined = leaked + cleaned.quarantined
    stats = merge_stats(taxonomy, manifests, len(records), cleaned, quarantined)
    stats["human_labels"] = human_labels(taxonomy, splits, cleaned.folded, export_summaries(inputs, manifests))
    report = build_report(taxonomy, splits, phases, stats, settings.min_test_support)
    warn_low_support(report)
    with atomic_output(Path(out_dir), overwrite, inputs=list(inputs)) as staging:
        files = write_outputs(staging, splits, phases, quarantined, report)
        manifest = merged_manifest(taxonomy, profile, manifests, files, report, stats)
        write_manifest(staging, manifest)
    return manifest


def clean(taxonomy: Taxonomy, settings: MergeSettings, records: list[Record], screeners: Sequence[Screener]) -> Cleaned:
    """Co-label (if enabled), fold exact duplicates, screen negatives, drop near-duplicates, apply the caps."""
    colabels_added = 0
    if settings.keyword_colabel_rules:
        records, colabels_added = apply_keyword_colabels(taxonomy, records)
    folded = fold_exact(records)
    screened, flagged = screen(folded.records, screeners)
    near = remove_near_duplicates(screened, settings.near_duplicate)
    capped = apply_caps(near.records, settings.caps, settings.splits.salt)
    cleaned = Cleaned(capped.kept, folded.quarantined + flagged, folded, near, colabels_added, capped)
    log.info(
        "merge: %d kept (%d exact dups, %d near dups, %d quarantined, %d over a cap, %d labels overruled by reviewers)",
        len(cleaned.kept),
        folded.exact_duplicates,
        len(near.removed),
        len(cleaned.quarantined),
        sum(capped.removed.values()),
        len(folded.human_wins),
    )
    return cleaned


def build_phases(train: Sequence[Record], phases: Mapping[str, Sequence[RecordKindName]]) -> dict[str, list[Record]]:
    """Curriculum subsets of the train split, chosen by record kind (merge.phases)."""
    return {phase: [record for record in train if record.source.kind.value in kinds] for phase, kinds in phases.items()}


def merge_stats(
    taxonomy: Taxonomy,
    manifests: Sequence[DatasetManifest],
    input_records: int,
    cleaned: Cleaned,
    quarantined: Sequence[Quarantined],
) -> dict[str, Any]:
    """The report's cleaning figures, overlap rates and the inputs' problems and smoke-test status."""
    generation_problems = [note for manifest in manifests for note in manifest.notes if not note.startswith("SMOKE-TEST")]
    smoke_test = any(manifest.smoke_test for manifest in manifests)
    return {
        "inputs": len(manifests),
        "input_records": input_records,
        "exact_duplicates": cleaned.folded.exact_duplicates,
        "folded_multilabel": cleaned.folded.folded_multilabel,
        "near_duplicates_removed": len(cleaned.near.removed),
        "near_duplicate_label_conflicts": len(cleaned.near.conflicting_pairs),
        "quarantined": len(quarantined),
        "quarantine_reasons": dict(sorted(Counter(item.reason.split(" [")[0] for item in quarantined).items())),
        "keyword_colabels_added": cleaned.colabels_added,
        "capped": cleaned.capped.as_report(),
        "input_sources": dict(sorted(Counter(source_name(record) for record in cleaned.folded.records).items())),
        "overlap_rates": {
            "configured": {f"{c.name}->{o}": r for c in taxonomy.categories for o, r in c.overlaps.items()},
            "realised": realised_overlaps([r for r in cleaned.kept if r.source.kind is Kind.POSITIVE]),
        },
        "generation_problems": generation_problems,
        "smoke_test": smoke_test,
        "notes": [SMOKE_TEST_NOTE] if smoke_test else [],
    }


def warn_low_support(report: Mapping[str, Any]) -> None:
    """Say loudly which categories too few test positives leave unmeasurable."""
    for item in report["low_support"]:
        log.warning(
            "min support: %s has %d test positives (< %d)", item["category"], item["test_positives"], item["min_test_support"]
        )


def write_outputs(
    out_dir: Path,
    splits: Mapping[str, Sequence[Record]],
    phases: Mapping[str, Sequence[Record]],
    quarantined: Sequence[Quarantined],
    report: dict[str, Any],
) -> dict[str, FileEntry]:
    """Splits, phases, quarantine and the report; returns the manifest's file entries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / SPLIT_FILES[name] for name in splits] + [out_dir / phase_file(name) for name in phases]
    files = {}
    for path, subset in zip(paths, [*splits.values(), *phases.values()], strict=True):
        files[path.name] = file_entry(path, write_jsonl(path, subset))
    files[QUARANTINE] = file_entry(out_dir / QUARANTINE, _write_quarantine(out_dir / QUARANTINE, quarantined))
    write_json(out_dir / DATASET_REPORT, report)
    (out_dir / DATASET_REPORT_MD).write_text(render_markdown(report), encoding="utf-8")
    files[DATASET_REPORT] = file_entry(out_dir / DATASET_REPORT, 0)
    files[DATASET_REPORT_MD] = file_entry(out_dir / DATASET_REPORT_MD, 0)
    return files


def merged_manifest(
    taxonomy: Taxonomy,
    profile: Profile,
    manifests: Sequence[DatasetManifest],
    files: dict[str, FileEntry],
    report: Mapping[str, Any],
    stats: Mapping[str, Any],
) -> DatasetManifest:
    """The merged dataset's manifest: files, counts, and the config and inputs it was built from."""
    return DatasetManifest(
        dataset="merged",
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.labels_sha256,
        files=files,
        counts={"splits": report["totals"], "phases": report["phases"], "quarantined": stats["quarantined"]},
        config={
            "profile": profile.model_dump(mode="json"),
            "taxonomy_content_sha256": taxonomy.content_sha256,
            "inputs": sorted(manifest.dataset_sha256 for manifest in manifests),
        },
        smoke_test=stats["smoke_test"],
        notes=stats["notes"] + stats["generation_problems"],
    )
