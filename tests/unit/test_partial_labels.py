"""Partial labels end to end: a category a record's source did not label is neither positive nor negative.

Each test builds a case where treating "unknown" as "negative" gives a different, wrong answer,
so every assertion fails if the mask is dropped anywhere along the way.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tiergate.components.evaluate.metrics import evaluate_split
from tiergate.components.evaluate.thresholds import prf, tune_thresholds
from tiergate.components.merge.dedupe import fold_exact
from tiergate.components.merge.report import build_report, render_markdown
from tiergate.components.train.trainer import macro_f1, masked_bce
from tiergate.components.train.weights import compute_pos_weight
from tiergate.errors import InputDataError
from tiergate.labels import UNKNOWN_TARGET, encode_targets, targets_and_known
from tiergate.records import Context, Kind, LabelState, Record, Source, make_record, source_name
from tiergate.taxonomy import Taxonomy

GENERAL = Context(audience="general", surface="message")


def _public(text: str, labels: tuple[str, ...], covers: tuple[str, ...], taxonomy: Taxonomy, line: int = 1) -> Record:
    """A public-set row: it knows only `covers`; every other category is unknown."""
    source = Source(
        generator="public",
        model="davidson",
        prompt_id=f"labeled_data.csv:{line}",
        category=labels[0] if labels else None,
        kind=Kind.POSITIVE if labels else Kind.INNOCUOUS,
    )
    unknown = [name for name in taxonomy.labels if name not in covers]
    return make_record(text, GENERAL, labels, source, unknown=unknown)


def _generated(text: str, labels: tuple[str, ...], kind: Kind = Kind.POSITIVE) -> Record:
    source = Source(generator="offline", model="m", prompt_id=f"p:{text[:8]}", category=labels[0] if labels else None, kind=kind)
    return make_record(text, GENERAL, labels, source)


def test_record_states_and_json_round_trip(taxonomy: Taxonomy) -> None:
    record = _public("you people are vermin", ("hate_speech",), ("hate_speech", "profanity"), taxonomy)
    assert record.label_state("hate_speech") is LabelState.POSITIVE
    assert record.label_state("profanity") is LabelState.NEGATIVE
    assert record.label_state("threats") is LabelState.UNKNOWN
    assert not record.fully_labelled and source_name(record) == "public:davidson"
    assert Record.model_validate(json.loads(record.to_json())) == record
    full = _generated("see you at the cafe", ())
    assert "unknown" not in json.loads(full.to_json())  # fully labelled lines are unchanged by partial labels
    with pytest.raises(ValueError, match="both positive and unknown"):
        Record.model_validate({**json.loads(record.to_json()), "unknown": ["hate_speech"]})


def test_targets_mark_unknown_cells(taxonomy: Taxonomy) -> None:
    record = _public("text", ("hate_speech",), ("hate_speech", "profanity"), taxonomy)
    vector = encode_targets(record, taxonomy.labels)
    assert vector[taxonomy.labels.index("hate_speech")] == 1.0
    assert vector[taxonomy.labels.index("profanity")] == 0.0
    assert vector[taxonomy.labels.index("threats")] == UNKNOWN_TARGET
    positive, known = targets_and_known([record, _generated("fine", ())], taxonomy.labels)
    assert known[1].all() and known[0].sum() == 2 and positive.sum() == 1
    broken = record.model_copy(update={"unknown": ("not_a_category",)})
    with pytest.raises(InputDataError, match="not_a_category"):
        encode_targets(broken, taxonomy.labels)
    assert vector.count(UNKNOWN_TARGET) == len(taxonomy.labels) - 2


def test_loss_ignores_unknown_cells() -> None:
    logits = torch.tensor([[3.0, -2.0, 5.0], [0.5, 4.0, -1.0]])
    pos_weight = torch.tensor([2.0, 1.0, 3.0])
    labels = torch.tensor([[1.0, 0.0, UNKNOWN_TARGET], [UNKNOWN_TARGET, 0.0, 1.0]])
    loss = masked_bce(logits, labels, pos_weight, smoothing=0.0)
    known = labels >= 0
    expected = F.binary_cross_entropy_with_logits(
        logits[known], labels[known], pos_weight=pos_weight.expand_as(logits)[known], reduction="sum"
    ) / labels.numel()
    assert torch.isclose(loss, expected)
    # Fully labelled rows: exactly the plain weighted BCE mean.
    full = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    plain = F.binary_cross_entropy_with_logits(logits, full, pos_weight=pos_weight, reduction="mean")
    assert torch.isclose(masked_bce(logits, full, pos_weight, 0.0), plain)
    # Changing the logit of an unknown cell changes nothing: it carries no gradient.
    moved = logits.clone()
    moved[0, 2] = -9.0
    assert torch.isclose(masked_bce(moved, labels, pos_weight, 0.0), loss)
    trainable = logits.clone().requires_grad_(True)
    masked_bce(trainable, labels, pos_weight, 0.1).backward()
    assert trainable.grad is not None and trainable.grad[0, 2] == 0 and trainable.grad[1, 0] == 0
    assert trainable.grad[0, 0] != 0


def test_a_known_cell_weighs_the_same_in_a_sparse_batch_as_in_a_full_one() -> None:
    """A public row's known cell must not pull 30x harder than a generated row's (run public-2's collapse)."""
    pos_weight = torch.ones(4)
    sparse = torch.tensor([[1.0, UNKNOWN_TARGET, UNKNOWN_TARGET, UNKNOWN_TARGET]] * 2)
    full = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2)
    gradients = []
    for labels in (sparse, full):
        logits = torch.zeros(2, 4, requires_grad=True)
        masked_bce(logits, labels, pos_weight, 0.0).backward()
        assert logits.grad is not None
        gradients.append(logits.grad[0, 0].item())
    assert gradients[0] == pytest.approx(gradients[1])


def test_pos_weight_counts_known_negatives_only(taxonomy: Taxonomy) -> None:
    covers = ("hate_speech",)
    records = [_public(f"hate {i}", ("hate_speech",), covers, taxonomy, i) for i in range(4)]
    records += [_public(f"not hate {i}", (), covers, taxonomy, 10 + i) for i in range(8)]
    records += [_generated("a threat", ("threats",))]
    weights = compute_pos_weight(records, taxonomy)
    # hate_speech: 4 positives, 8 public negatives + 1 generated negative = 9 known negatives.
    assert weights["hate_speech"] == min(taxonomy.tier_of("hate_speech").pos_weight_cap, 9 / 4)
    # threats: 1 positive and no known negative (the public rows leave it unknown), not 12 negatives:
    # the weight's floor of 1, never the cap that 12:1 would give.
    assert weights["threats"] == 1.0 < taxonomy.tier_of("threats").pos_weight_cap


def test_training_selection_metric_masks_unknown() -> None:
    targets = np.array([[1, 0], [0, 0], [0, 1]])
    scores = np.array([[0.9, 0.9], [0.1, 0.9], [0.2, 0.9]])
    everything, _ = macro_f1(scores, targets, 0.5)
    known = np.array([[True, False], [True, False], [True, True]])
    masked, per_label = macro_f1(scores, targets, 0.5, known)
    assert masked == 1.0 and per_label == {0: 1.0, 1: 1.0}
    assert everything < 1.0  # the unknown rows' high scores would count as false positives


def test_thresholds_tuned_on_known_rows_only(taxonomy: Taxonomy) -> None:
    column = taxonomy.labels.index("threats")
    rows = 60
    scores = np.full((rows, len(taxonomy.labels)), 0.05, dtype=np.float32)
    targets = np.zeros_like(scores, dtype=bool)
    targets[:20, column] = True
    scores[:20, column] = 0.6
    scores[20:40, column] = 0.55  # rows 20-39: high scores, but a source that never labelled threats
    known = np.ones_like(targets)
    known[20:40, column] = False
    masked = tune_thresholds(taxonomy, scores, targets, known)["search"]["threats"]
    unmasked = tune_thresholds(taxonomy, scores, targets)["search"]["threats"]
    assert masked["val_f1"] == 1.0 and masked["known_rows"] == 40
    assert unmasked["val_f1"] < 1.0 or unmasked["threshold"] > 0.55


def test_test_metrics_count_known_labels_only(taxonomy: Taxonomy) -> None:
    records = [_public(f"row {i}", ("hate_speech",) if i < 10 else (), ("hate_speech",), taxonomy, i) for i in range(30)]
    targets, known = targets_and_known(records, taxonomy.labels)
    flags = np.zeros_like(targets)
    flags[:10, taxonomy.labels.index("hate_speech")] = True
    flags[:, taxonomy.labels.index("threats")] = True  # every row flagged for threats: unknown there, so no errors
    scores = flags.astype(np.float32)
    document = tune_thresholds(taxonomy, scores, targets, known)
    metrics = evaluate_split(taxonomy, records, scores, flags, targets, document, 5, 20, 0.95, 0, 10, known)
    hate, threats = metrics["per_category"]["hate_speech"], metrics["per_category"]["threats"]
    assert hate["f1"] == 1.0 and hate["known"] == 30 and hate["support"] == 10
    assert threats["known"] == 0 and threats["false_positives"] == 0
    assert metrics["micro_f1"] == 1.0
    assert prf(flags, targets)[0] < 1.0  # without the mask, the threats flags are false positives


def test_fold_merges_what_sources_know(taxonomy: Taxonomy) -> None:
    covers_threats = ("threats",)
    public_negative = _public("I will see you tomorrow", (), covers_threats, taxonomy)
    generated_positive = _generated("I will see you tomorrow", ("harassment",))
    folded = fold_exact([public_negative, generated_positive])
    # The public row knows nothing about harassment: no conflict; the folded record knows everything.
    assert not folded.quarantined and len(folded.records) == 1
    assert folded.records[0].labels == ("harassment",) and folded.records[0].unknown == ()
    # A public row that knows threats is negative conflicts with a threats positive of the same text.
    generated_threat = _generated("I will see you tomorrow", ("threats",))
    conflicted = fold_exact([public_negative, generated_threat])
    assert [item.record for item in conflicted.quarantined] == [public_negative]
    assert "threats" in conflicted.quarantined[0].reason
    # Two partial rows: a category stays unknown only where both leave it unknown.
    other = _public("I will see you tomorrow", (), ("threats", "harassment"), taxonomy, 2)
    merged = fold_exact([public_negative, other]).records[0]
    assert "harassment" not in merged.unknown and "hate_speech" in merged.unknown


def test_dataset_report_shows_coverage_per_source(taxonomy: Taxonomy) -> None:
    records = [_public("hateful row", ("hate_speech",), ("hate_speech",), taxonomy), _generated("a threat", ("threats",))]
    report = build_report(taxonomy, {"train": records, "val": [], "test": []}, {"phase1": records}, _stats(), 1)
    coverage = report["coverage"]
    assert coverage["hate_speech"]["public:davidson"] == {"positive": 1, "negative": 0, "unknown": 0}
    assert coverage["threats"]["public:davidson"] == {"positive": 0, "negative": 0, "unknown": 1}
    assert coverage["threats"]["offline"] == {"positive": 1, "negative": 0, "unknown": 0}
    assert report["per_category"]["threats"]["train"]["known"] == 1
    assert report["by_source"]["train"] == {"offline": 1, "public:davidson": 1}
    markdown = render_markdown(report)
    assert "Known-label coverage" in markdown and "| threats | 1 / 1 (100%) | 0 / 0 (0%) |" in markdown


def _stats() -> dict[str, object]:
    return {
        "exact_duplicates": 0,
        "folded_multilabel": 0,
        "near_duplicates_removed": 0,
        "near_duplicate_label_conflicts": 0,
        "quarantined": 0,
        "quarantine_reasons": {},
        "keyword_colabels_added": 0,
        "generation_problems": [],
        "notes": [],
    }


def test_test_metrics_per_source(taxonomy: Taxonomy) -> None:
    public = [_public(f"row {i}", ("hate_speech",) if i < 5 else (), ("hate_speech",), taxonomy, i) for i in range(10)]
    generated = [_generated(f"gen {i}", ("threats",) if i < 5 else ()) for i in range(10)]
    records = public + generated
    targets, known = targets_and_known(records, taxonomy.labels)
    flags = targets.copy()
    flags[5, taxonomy.labels.index("hate_speech")] = True  # one public negative flagged: a false positive
    flags[:10, taxonomy.labels.index("threats")] = True  # public rows never labelled threats: not errors
    document = tune_thresholds(taxonomy, flags.astype(np.float32), targets, known)
    metrics = evaluate_split(taxonomy, records, flags.astype(np.float32), flags, targets, document, 1, 0, 0.95, 0, 5, known)
    davidson, offline = metrics["sources"]["public:davidson"], metrics["sources"]["offline"]
    assert davidson["records"] == 10 and davidson["categories"] == 1
    assert davidson["macro_f1"] == pytest.approx(2 * 5 / (2 * 5 + 1))
    assert davidson["negative_rows"] == 5 and davidson["negative_rows_flagged"] == 1
    assert offline["macro_f1"] == 1.0 and offline["negative_rows_flagged"] == 0


def test_reports_show_the_per_source_table() -> None:
    from tiergate.components.evaluate.report_sections import source_table

    metrics = {
        "sources": {
            "offline": {
                "records": 10,
                "categories": 3,
                "macro_f1": 1.0,
                "micro_f1": 1.0,
                "negative_rows": 4,
                "negative_rows_flagged": 0,
            },
            "public:davidson": {
                "records": 20,
                "categories": 0,
                "macro_f1": None,
                "micro_f1": 0.0,
                "negative_rows": 20,
                "negative_rows_flagged": 3,
            },
        }
    }
    table = source_table(metrics)
    assert table.rows == [["offline", 10, 3, "1.000", "1.000", "0 / 4"], ["public:davidson", 20, 0, "", "0.000", "3 / 20"]]
    assert source_table({}).rows == []  # metrics from before per-source scoring: an empty table, not a crash
