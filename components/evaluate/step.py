"""The evaluate step: thresholds on val, metrics on test, regression vectors, gate, report.

Runs the exported fp16 ONNX through `tiergate.inference` — the tokenizer, `format_input`
and post-processor that Triton runs — so the gate judges what will be served.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tiergate.components.evaluate.metrics import evaluate_split
from tiergate.components.evaluate.regression import load_suites, run_suites
from tiergate.components.evaluate.report import render_html, render_markdown
from tiergate.components.evaluate.thresholds import prf, tune_thresholds
from tiergate.components.export.onnx_io import check_onnx_labels
from tiergate.datasets import load_manifest
from tiergate.errors import InputDataError
from tiergate.gate import GateRecord, Judged, decide, write_gate
from tiergate.hashing import read_json, sha256_file, write_json
from tiergate.inference import THRESHOLDS_FILE, ModerationPipeline, Postprocessor, ThresholdSet, most_severe_tier
from tiergate.labels import encode_labels
from tiergate.numeric import sigmoid
from tiergate.paths import project_path
from tiergate.profiles import Profile
from tiergate.records import Record, read_jsonl
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)
MODEL_FILES = {"fp16": "model_fp16.onnx", "fp32": "model.onnx"}


def _targets(records: list[Record], taxonomy: Taxonomy) -> np.ndarray:
    return np.array([encode_labels(record.labels, taxonomy.labels) for record in records], dtype=bool).reshape(
        -1, len(taxonomy.labels)
    )


def evaluate_model(
    taxonomy: Taxonomy,
    profile: Profile,
    export_dir: Path,
    data_dir: Path,
    out_dir: Path,
    regression_dir: Path | None = None,
) -> GateRecord:
    """Write thresholds.json, metrics.json, regression.json, gate.json and the reports; return the gate."""
    settings = profile.evaluate
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    model_path = export_dir / MODEL_FILES[settings.variant]
    check_onnx_labels(model_path, taxonomy)
    manifest = load_manifest(Path(data_dir), taxonomy)
    val = read_jsonl(Path(data_dir) / "val.jsonl")
    test = read_jsonl(Path(data_dir) / "test.jsonl")
    if not val or not test:
        raise InputDataError(f"{data_dir}: val has {len(val)} and test {len(test)} records; both must be non-empty")
    suites = load_suites(regression_dir or project_path(settings.regression_dir), taxonomy)
    out_dir.mkdir(parents=True, exist_ok=True)

    # 1. Thresholds on validation, through the served pre-processing and model.
    provisional = ThresholdSet(
        taxonomy.labels,
        taxonomy.sha256,
        dict.fromkeys(taxonomy.labels, 0.5),
        {c.name: c.tier for c in taxonomy.categories},
        [c.name for c in taxonomy.categories if c.optional],
    )
    pipeline = ModerationPipeline(model_path, export_dir / "tokenizer", provisional, settings.batch_size)
    val_scores = sigmoid(pipeline.logits([r.text for r in val], [r.context for r in val]))
    document = tune_thresholds(taxonomy, val_scores, _targets(val, taxonomy))
    write_json(out_dir / THRESHOLDS_FILE, document)
    thresholds = ThresholdSet.load(out_dir / THRESHOLDS_FILE, taxonomy.labels)
    pipeline.postprocessor = Postprocessor(thresholds)
    log.info("evaluate: thresholds tuned on %d validation records", len(val))

    # 2. Metrics on test only, every optional category enabled; then with optional categories off.
    test_logits = pipeline.logits([r.text for r in test], [r.context for r in test])
    decisions = pipeline.postprocessor.decide(test_logits)
    targets = _targets(test, taxonomy)
    metrics = evaluate_split(
        taxonomy,
        test,
        decisions.scores,
        decisions.flags,
        targets,
        document,
        profile.merge.min_test_support,
        settings.bootstrap_samples,
        settings.confidence,
        profile.seed,
        settings.pr_curve_points,
    )
    optional = [c.name for c in taxonomy.categories if c.optional]
    without = pipeline.postprocessor.decide(test_logits, enabled_optional=[])
    columns = [taxonomy.labels.index(name) for name in optional]
    metrics["optional_categories"] = {
        "categories": optional,
        "enabled": {"micro_f1": metrics["micro_f1"], "flags": int(decisions.flags[:, columns].sum())},
        "disabled": {"micro_f1": prf(without.flags, targets)[2], "flags": int(without.flags[:, columns].sum())},
        "note": "an inference-time switch in the post-processor; the weights are identical both ways",
    }
    metrics["routing_confusion"] = routing_confusion(taxonomy, targets, decisions.max_tier)
    write_json(out_dir / "metrics.json", metrics)

    # 3. Regression vectors, same pipeline.
    def classify(texts: list[str], contexts: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        result = pipeline.classify(texts, contexts)
        return result.scores, result.flags

    regression = run_suites(suites, taxonomy, classify)
    write_json(out_dir / "regression.json", regression)

    # 4. The decision, with digests of exactly what was judged.
    judged = Judged(
        model_file=model_path.name,
        model_sha256=sha256_file(model_path),
        thresholds_sha256=sha256_file(out_dir / THRESHOLDS_FILE),
        tokenizer_sha256=sha256_file(export_dir / "tokenizer" / "tokenizer.json"),
        dataset_sha256=manifest.dataset_sha256,
        taxonomy_sha256=taxonomy.sha256,
        regression_sha256=regression["sha256"],
        profile=profile.name,
        profile_sha256=profile.sha256,
    )
    record = decide(taxonomy, metrics, regression, settings, judged, smoke_test=manifest.smoke_test)
    write_gate(out_dir, record)
    gate = record.as_json()  # the reports read the record as written
    dataset_report = read_json(Path(data_dir) / "report.json") if (Path(data_dir) / "report.json").is_file() else {}
    export_report = read_json(export_dir / "export_report.json") if (export_dir / "export_report.json").is_file() else {}
    (out_dir / "report.md").write_text(render_markdown(taxonomy, gate, metrics, regression, dataset_report), encoding="utf-8")
    (out_dir / "report.html").write_text(
        render_html(taxonomy, gate, metrics, regression, document, dataset_report, export_report), encoding="utf-8"
    )
    write_json(out_dir / "kfp_metrics.json", kfp_scalars(gate, metrics))
    log.info("gate: %s (macro F1 %.4f, %d failing rules)", gate["decision"].upper(), metrics["macro_f1"], len(gate["failures"]))
    return record


def routing_confusion(taxonomy: Taxonomy, targets: np.ndarray, predicted_tier: np.ndarray) -> dict[str, Any]:
    """True vs predicted routing tier (most severe flagged tier, 0 = nothing): the dashboard's confusion matrix."""
    true_tier = most_severe_tier(targets, np.array([taxonomy.category(name).tier for name in taxonomy.labels]))
    names = ["none", *[f"T{tier}" for tier in sorted(taxonomy.tiers)]]
    size = len(names)
    matrix = np.zeros((size, size), dtype=int)
    for truth, guess in zip(true_tier, predicted_tier, strict=True):
        matrix[int(truth), int(guess)] += 1
    return {"labels": names, "matrix": matrix.tolist()}


def kfp_scalars(gate: dict[str, Any], metrics: dict[str, Any]) -> dict[str, float]:
    """Flat numbers for the KFP dashboard's Metrics artifact."""
    scalars = {
        "gate_passed": float(gate["passed"]),
        "macro_f1": metrics["macro_f1"],
        "micro_f1": metrics["micro_f1"],
        "failing_rules": float(len(gate["failures"])),
    }
    for tier, entry in metrics["tiers"].items():
        if entry["macro_f1"] is not None:
            scalars[f"tier{tier}_macro_f1"] = entry["macro_f1"]
    for name, entry in metrics["per_category"].items():
        scalars[f"f1_{name}"] = entry["f1"]
    return {key: round(float(value), 6) for key, value in scalars.items()}
