"""Reviewed items as a training dataset, in the importer's format (`records.jsonl` + `manifest.json`),
so `tiergate data merge` takes it beside generated and public data.

- Each record's source is `generator="human"` (merge names the source `human` and never screens
  it as generator output), `model="feedback"`, `prompt_id="feedback:item:<id>"`; kind `positive`
  when a category is positive, else `innocuous`, like an imported row (so it trains in every phase).
- Labels are partial: a category is known only where reviewers labelled it and agreed; every
  other category is `unknown` (never a negative by default).
- Items whose reviewers agree on less than `min_agreement` of the categories they both labelled
  are left out and counted; so are items left with no agreed category.
- `provenance.jsonl` beside the records says, per record, the item, its reviewer count and agreement;
  `export_report.json` holds the counts and Cohen's kappa per category.

The folder is written whole or not at all (`tiergate.outputs.atomic_output`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tiergate.datasets import DatasetManifest, file_entry, write_manifest
from tiergate.errors import InputDataError
from tiergate.feedback.agreement import category_kappa, item_agreement
from tiergate.feedback.db import sqlite_path
from tiergate.feedback.store import FeedbackStore, ReviewedItem, item_context
from tiergate.hashing import canonical_json, write_json
from tiergate.outputs import atomic_output
from tiergate.records import Kind, LabelState, Record, Source, make_record, record_sort_key, write_jsonl
from tiergate.taxonomy import Taxonomy

RECORDS = "records.jsonl"
PROVENANCE = "provenance.jsonl"
EXPORT_REPORT = "export_report.json"
DATASET = "feedback"
GENERATOR = "human"


def export_record(taxonomy: Taxonomy, entry: ReviewedItem, consensus: dict[str, str]) -> Record:
    positives = sorted(name for name, state in consensus.items() if state == LabelState.POSITIVE.value)
    source = Source(
        generator=GENERATOR,
        model=DATASET,
        prompt_id=f"feedback:item:{entry.item.id}",
        category=positives[0] if positives else None,
        kind=Kind.POSITIVE if positives else Kind.INNOCUOUS,
    )
    unknown = [name for name in taxonomy.labels if name not in consensus]
    return make_record(entry.item.text, item_context(entry.item, taxonomy), positives, source, unknown=unknown)


def export_feedback(
    store: FeedbackStore, out_dir: Path, min_agreement: float | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Write the reviewed items to `out_dir`; returns the export report (also written beside them)."""
    taxonomy = store.taxonomy
    floor = store.settings.min_agreement if min_agreement is None else min_agreement
    if not 0 <= floor <= 1:
        raise InputDataError(f"--min-agreement {floor} must lie in 0..1")
    reviewed = store.reviewed_items()
    records: list[tuple[Record, dict[str, Any]]] = []
    left_out: Counter[str] = Counter(below_agreement=0, no_agreed_label=0)
    for entry in reviewed:
        agreement = item_agreement([review.labels for review in entry.reviews])
        if agreement.agreement is not None and agreement.agreement < floor:
            left_out["below_agreement"] += 1
            continue
        if not agreement.consensus:
            left_out["no_agreed_label"] += 1
            continue
        record = export_record(taxonomy, entry, agreement.consensus)
        provenance = {
            "record": record.id,
            "item": entry.item.id,
            "item_source": entry.item.source,
            "reviewers": agreement.reviewers,
            "agreement": agreement.agreement,
            "disputed": list(agreement.disputed),
        }
        records.append((record, provenance))
    records.sort(key=lambda pair: (record_sort_key(pair[0]), pair[1]["item"]))
    by_category = {name: {state.value: 0 for state in LabelState} for name in taxonomy.labels}
    for record, _ in records:
        for name in taxonomy.labels:
            by_category[name][record.label_state(name).value] += 1
    kappa = category_kappa([[review.labels for review in entry.reviews] for entry in reviewed], taxonomy.labels)
    report = {
        "reviewed_items": len(reviewed),
        "exported": len(records),
        "left_out": dict(left_out),
        "min_agreement": floor,
        "reviewers": dict(sorted(Counter(str(p["reviewers"]) for _, p in records).items())),
        "by_category": by_category,
        "kappa": {name: value.as_dict() for name, value in kappa.items()},
    }
    database = sqlite_path(store.engine.url)  # an --out that is (or holds) the store's folder would replace it
    with atomic_output(Path(out_dir), overwrite=overwrite, inputs=[database]) as staging:
        count = write_jsonl(staging / RECORDS, (record for record, _ in records))
        with (staging / PROVENANCE).open("w", encoding="utf-8") as handle:
            for _, provenance in records:
                handle.write(canonical_json(provenance) + "\n")
        write_json(staging / EXPORT_REPORT, report)
        manifest = DatasetManifest(
            dataset=DATASET,
            labels=taxonomy.labels,
            taxonomy_sha256=taxonomy.labels_sha256,
            files={RECORDS: file_entry(staging / RECORDS, count), PROVENANCE: file_entry(staging / PROVENANCE, count)},
            counts={"records": count, "left_out": dict(left_out), "by_category": by_category},
            config={"min_agreement": floor, "generator": GENERATOR},
            notes=[
                f"{total} reviewed item(s) left out: {reason.replace('_', ' ')}" for reason, total in left_out.items() if total
            ],
        )
        write_manifest(staging, manifest)
    return report
