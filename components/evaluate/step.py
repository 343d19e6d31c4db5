"""The evaluate step: thresholds on val, metrics on test, regression vectors, gate, report.

Runs the exported ONNX variant that `evaluate.variant` names (fp16 by default: what is served)
through `tiergate.inference` — the tokenizer, `format_input` and post-processor that Triton
runs — so the gate judges what will be served.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tiergate.artifacts import (
    DATASET_REPORT,
    EVAL_METRICS,
    EXPORT_REPORT,
    KFP_METRICS,
    ONNX_FILES,
    REGRESSION_RESULTS,
    REPORT_HTML,
    REPORT_MD,
    TEST_SPLIT,
    THRESHOLDS_FILE,
    TOKENIZER_DIR,
    TOKENIZER_FILE,
    VAL_SPLIT,
)
from tiergate.components.evaluate.analysis import error_analysis
from tiergate.components.evaluate.baseline import baseline_flagger, compare_with_baseline
from tiergate.components.evaluate.comparison import PreviousModel, compare, load_previous
from tiergate.components.evaluate.metrics import evaluate_split
from tiergate.components.evaluate.ood import Flagger, OodSet, load_sets, run_ood
from tiergate.components.evaluate.regression import run_suites
from tiergate.components.evaluate.report import render_html, render_markdown
from tiergate.components.evaluate.thresholds import prf, tune_thresholds
from tiergate.datasets import DatasetManifest, load_manifest
from tiergate.errors import InputDataError
from tiergate.evasion import detection_table, positive_probes
from tiergate.exports import ExportManifest, require_same_dataset, verify_export
from tiergate.gate import GateRecord, Judged, decide, gate_policy, write_gate
from tiergate.hashing import read_json, sha256_file, write_json
from tiergate.inference import Decisions, ModerationPipeline, Postprocessor, ThresholdSet, most_severe_tier
from tiergate.labels import targets_and_known
from tiergate.numeric import sigmoid
from tiergate.onnx_model import check_onnx_labels
from tiergate.outputs import atomic_output
from tiergate.paths import project_path
from tiergate.profiles import EvaluateSettings, Profile
from tiergate.records import Context, Record, read_jsonl
from tiergate.regression import Suite, load_suites
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)

# Thresholds the pipeline is built with before tuning. Only logits are read until the tuned
# thresholds replace them, so this value cannot reach any output: it is not a setting.
PLACEHOLDER_THRESHOLD = 0.5


@dataclass(frozen=True)
class EvaluationInputs:
    """Everything evaluation reads, loaded and checked before any model runs."""

    model_path: Path
    tokenizer_dir: Path
    manifest: DatasetManifest
    export: ExportManifest
    val: list[Record]
    test: list[Record]
    suites: list[Suite]
    ood_sets: list[OodSet] = field(default_factory=list)
    ood_not_run: dict[str, str] = field(default_factory=dict)
    public_data_dir: Path | None = None
    previous: PreviousModel | None = None


def _targets(records: list[Record], taxonomy: Taxonomy) -> tuple[np.ndarray, np.ndarray]:
    """(positive, known) matrices: partial labels are scored only where known."""
    return targets_and_known(records, taxonomy.labels)


def _texts_and_contexts(records: list[Record]) -> tuple[list[str], list[Context]]:
    return [record.text for record in records], [record.context for record in records]


def _read_json_if_present(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def evaluate_model(
    taxonomy: Taxonomy,
    profile: Profile,
    export_dir: Path,
    data_dir: Path,
    out_dir: Path,
    regression_dir: Path | None = None,
    overwrite: bool = False,
    public_data_dir: Path | None = None,
    previous_model_dir: Path | None = None,
) -> GateRecord:
    """Write thresholds.json, metrics.json, regression.json, gate.json and the reports; return the gate.

    `public_data_dir` holds the out-of-distribution suites (xstest/, simplesafetytests/; none: the
    report says they were not run); `previous_model_dir` the previously promoted model's repository
    (none: the first model, nothing to compare). Everything is written into a staging folder that
    replaces `out_dir` only when complete.
    """
    export_dir, data_dir = Path(export_dir), Path(data_dir)
    inputs = load_inputs(taxonomy, profile.evaluate, export_dir, data_dir, regression_dir, public_data_dir, previous_model_dir)
    sources = [export_dir, data_dir, regression_dir, public_data_dir, previous_model_dir]
    with atomic_output(Path(out_dir), overwrite, inputs=sources) as staging:
        record = evaluate_into(taxonomy, profile, inputs, data_dir, export_dir, staging)
    return record


def evaluate_into(
    taxonomy: Taxonomy, profile: Profile, inputs: EvaluationInputs, data_dir: Path, export_dir: Path, out_dir: Path
) -> GateRecord:
    settings = profile.evaluate
    pipeline = ModerationPipeline(inputs.model_path, inputs.tokenizer_dir, placeholder_thresholds(taxonomy), settings.batch_size)
    document = tune_on_validation(taxonomy, pipeline, inputs.val, out_dir)
    scored = score_test(taxonomy, pipeline, inputs.test)
    metrics = measure_test(taxonomy, profile, pipeline, inputs.test, document, scored)
    metrics.update(further_checks(taxonomy, profile, pipeline, inputs, scored))
    write_json(out_dir / EVAL_METRICS, metrics)
    regression = run_regression(taxonomy, pipeline, inputs.suites)
    write_json(out_dir / REGRESSION_RESULTS, regression)
    record = judge(taxonomy, profile, inputs, metrics, regression, out_dir)
    write_reports(taxonomy, record, metrics, regression, document, data_dir, export_dir, out_dir)
    log.info("gate: %s (macro F1 %.4f, %d failing rules)", record.decision.upper(), metrics["macro_f1"], len(record.failures))
    return record


def load_inputs(
    taxonomy: Taxonomy,
    settings: EvaluateSettings,
    export_dir: Path,
    data_dir: Path,
    regression_dir: Path | None,
    public_data_dir: Path | None = None,
    previous_model_dir: Path | None = None,
) -> EvaluationInputs:
    """Refuse a model, dataset, suite or previous model built for another taxonomy, an unfinished or failed
    export, or a model trained on other data, before spending time on inference."""
    export = verify_export(export_dir, taxonomy)
    model_path = export_dir / ONNX_FILES[settings.variant]
    if model_path.name not in export.files:
        raise InputDataError(f"{export_dir} has no {settings.variant} variant ({model_path.name})")
    check_onnx_labels(model_path, taxonomy)
    manifest = load_manifest(data_dir, taxonomy)
    require_same_dataset(export.dataset_sha256, manifest.dataset_sha256, data_dir, "exported model")
    val = read_jsonl(data_dir / VAL_SPLIT)
    test = read_jsonl(data_dir / TEST_SPLIT)
    if not val or not test:
        raise InputDataError(f"{data_dir}: val has {len(val)} and test {len(test)} records; both must be non-empty")
    suites = load_suites(
        regression_dir or project_path(settings.regression_dir), taxonomy, settings.regression_min_pass_rate
    )
    ood_sets, ood_not_run = load_sets(taxonomy, public_data_dir)
    previous = load_previous(taxonomy, previous_model_dir, settings.batch_size)
    return EvaluationInputs(
        model_path,
        export_dir / TOKENIZER_DIR,
        manifest,
        export,
        val,
        test,
        suites,
        ood_sets,
        ood_not_run,
        None if public_data_dir is None else Path(public_data_dir),
        previous,
    )


def placeholder_thresholds(taxonomy: Taxonomy) -> ThresholdSet:
    """A `ThresholdSet` for building the pipeline before the thresholds are tuned."""
    return ThresholdSet(
        taxonomy.labels,
        taxonomy.labels_sha256,
        dict.fromkeys(taxonomy.labels, PLACEHOLDER_THRESHOLD),
        dict(zip(taxonomy.labels, taxonomy.tier_vector(), strict=True)),
        taxonomy.optional_labels(),
    )


def tune_on_validation(taxonomy: Taxonomy, pipeline: ModerationPipeline, val: list[Record], out_dir: Path) -> dict[str, Any]:
    """Tune thresholds on val through the served path, write them, and install them as written."""
    val_scores = sigmoid(pipeline.logits(*_texts_and_contexts(val)))
    document = tune_thresholds(taxonomy, val_scores, *_targets(val, taxonomy))
    write_json(out_dir / THRESHOLDS_FILE, document)
    # Reload what was written, so test metrics use exactly the file that is served.
    pipeline.postprocessor = Postprocessor(ThresholdSet.load(out_dir / THRESHOLDS_FILE, taxonomy.labels))
    log.info("evaluate: thresholds tuned on %d validation records", len(val))
    return document


@dataclass(frozen=True)
class ScoredTest:
    """The test split read once through the served path at the tuned thresholds, with its partial truth."""

    logits: np.ndarray
    decisions: Decisions
    targets: np.ndarray
    known: np.ndarray


def score_test(taxonomy: Taxonomy, pipeline: ModerationPipeline, test: list[Record]) -> ScoredTest:
    """Inference on test once: every section of metrics.json reads these decisions."""
    logits = pipeline.logits(*_texts_and_contexts(test))
    return ScoredTest(logits, pipeline.postprocessor.decide(logits), *_targets(test, taxonomy))


def measure_test(
    taxonomy: Taxonomy,
    profile: Profile,
    pipeline: ModerationPipeline,
    test: list[Record],
    document: dict[str, Any],
    scored: ScoredTest,
) -> dict[str, Any]:
    """Metrics on test only: every optional category enabled, then compared with them off."""
    settings = profile.evaluate
    decisions, targets, known = scored.decisions, scored.targets, scored.known
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
        known,
    )
    without = pipeline.postprocessor.decide(scored.logits, enabled_optional=[])
    metrics["optional_categories"] = optional_comparison(
        taxonomy, metrics["micro_f1"], decisions.flags, without.flags, targets, known
    )
    metrics["routing_confusion"] = routing_confusion(taxonomy, targets, decisions.max_tier)
    return metrics


def further_checks(
    taxonomy: Taxonomy, profile: Profile, pipeline: ModerationPipeline, inputs: EvaluationInputs, scored: ScoredTest
) -> dict[str, Any]:
    """Error analysis, out-of-distribution suites, the linear baseline and the previous model, on the tuned thresholds."""
    settings, labels, test = profile.evaluate, taxonomy.labels, inputs.test
    decisions, targets, known = scored.decisions, scored.targets, scored.known
    model = Flagger("model", labels, lambda texts, contexts: pipeline.classify(texts, contexts).flags)
    previous_flags = None if inputs.previous is None else inputs.previous.pipeline.classify(*_texts_and_contexts(test)).flags
    return {
        "error_analysis": error_analysis(
            labels, test, decisions.scores, decisions.flags, targets, known, settings.error_examples
        ),
        "ood": run_ood(
            inputs.ood_sets, inputs.ood_not_run, [model, baseline_flagger()], settings.confidence, inputs.public_data_dir
        ),
        "baseline": compare_with_baseline(
            labels, test, decisions.scores, decisions.flags, targets, known, pipeline.postprocessor.vector
        ),
        "comparison": compare(
            taxonomy,
            inputs.previous,
            decisions.flags,
            previous_flags,
            targets,
            known,
            settings.bootstrap_samples,
            settings.confidence,
            profile.seed,
        ),
    }


def optional_comparison(
    taxonomy: Taxonomy,
    enabled_micro_f1: float,
    enabled: np.ndarray,
    disabled: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
) -> dict[str, Any]:
    """What switching the optional categories off at inference changes on test."""
    optional = taxonomy.optional_labels()
    columns = [taxonomy.labels.index(name) for name in optional]
    return {
        "categories": optional,
        "enabled": {"micro_f1": enabled_micro_f1, "flags": int(enabled[:, columns].sum())},
        "disabled": {"micro_f1": prf(disabled, targets, known)[2], "flags": int(disabled[:, columns].sum())},
        "note": "an inference-time switch in the post-processor; the weights are identical both ways",
    }


def run_regression(taxonomy: Taxonomy, pipeline: ModerationPipeline, suites: list[Suite]) -> dict[str, Any]:
    """Regression vectors through the same pipeline, tuned thresholds installed."""

    def classify(texts: list[str], contexts: list[Context]) -> tuple[np.ndarray, np.ndarray]:
        result = pipeline.classify(texts, contexts)
        return result.scores, result.flags

    result = run_suites(suites, taxonomy, classify)
    result["evasion"] = evasion_table(taxonomy, pipeline, suites)
    return result


def evasion_table(taxonomy: Taxonomy, pipeline: ModerationPipeline, suites: list[Suite]) -> dict[str, Any]:
    """Each evasion transformation of each must-flag vector, detected relative to the plain text (tiergate.evasion)."""
    audiences, surfaces = taxonomy.contexts.audiences, taxonomy.contexts.surfaces

    def flags(texts: list[str], contexts: list[str]) -> np.ndarray:
        return pipeline.classify(texts, [Context.parse(context, audiences, surfaces) for context in contexts]).flags

    return detection_table(positive_probes(suites), taxonomy.labels, flags)


def judge(
    taxonomy: Taxonomy,
    profile: Profile,
    inputs: EvaluationInputs,
    metrics: dict[str, Any],
    regression: dict[str, Any],
    out_dir: Path,
) -> GateRecord:
    """The decision, with digests of exactly what was judged, written as gate.json."""
    judged = Judged(
        model_file=inputs.model_path.name,
        model_sha256=sha256_file(inputs.model_path),
        thresholds_sha256=sha256_file(out_dir / THRESHOLDS_FILE),
        tokenizer_sha256=sha256_file(inputs.tokenizer_dir / TOKENIZER_FILE),
        dataset_sha256=inputs.manifest.dataset_sha256,
        checkpoint_sha256=inputs.export.checkpoint_sha256,
        export_sha256=inputs.export.digest(),
        taxonomy_sha256=taxonomy.labels_sha256,
        regression_sha256=regression["sha256"],
        profile=profile.name,
        profile_sha256=profile.sha256,
        compared_with=compared_with(metrics),
    )
    policy = gate_policy(taxonomy, profile.evaluate, profile.merge.min_test_support, inputs.suites)
    record = decide(policy, metrics, regression, judged, smoke_test=inputs.manifest.smoke_test)
    return write_gate(out_dir, record)


def compared_with(metrics: dict[str, Any]) -> str | None:
    """`<version>@<repository digest>` of the previous model the comparison judged against, or None (a first model)."""
    previous = (metrics.get("comparison") or {}).get("previous")
    return f"{previous['model_version']}@{previous['repository_digest']}" if previous else None


def write_reports(
    taxonomy: Taxonomy,
    record: GateRecord,
    metrics: dict[str, Any],
    regression: dict[str, Any],
    document: dict[str, Any],
    data_dir: Path,
    export_dir: Path,
    out_dir: Path,
) -> None:
    """The Markdown and HTML reports and the KFP scalars, all from the gate record as written."""
    gate = record.as_json()
    dataset_report = _read_json_if_present(data_dir / DATASET_REPORT)
    export_report = _read_json_if_present(export_dir / EXPORT_REPORT)
    (out_dir / REPORT_MD).write_text(render_markdown(taxonomy, gate, metrics, regression, dataset_report), encoding="utf-8")
    (out_dir / REPORT_HTML).write_text(
        render_html(taxonomy, gate, metrics, regression, document, dataset_report, export_report), encoding="utf-8"
    )
    write_json(out_dir / KFP_METRICS, kfp_scalars(gate, metrics))


def routing_confusion(taxonomy: Taxonomy, targets: np.ndarray, predicted_tier: np.ndarray) -> dict[str, Any]:
    """True vs predicted routing tier (most severe flagged tier, 0 = nothing): the dashboard's confusion matrix."""
    true_tier = most_severe_tier(targets, np.array(taxonomy.tier_vector()))
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
    scalars.update(further_scalars(metrics))
    return {key: round(float(value), 6) for key, value in scalars.items()}


def further_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The baseline's and the model's any-category F1 and each out-of-distribution rate, for the dashboard."""
    scalars = {
        "baseline_any_f1": metrics["baseline"]["binary"]["baseline"]["f1"],
        "model_any_f1": metrics["baseline"]["binary"]["model"]["f1"],
        "comparison_blocking": float(len(metrics["comparison"]["blocking"])),
    }
    for name, entry in metrics["ood"]["sets"].items():
        for check, results in entry.get("checks", {}).items():
            if results["model"]["rate"] is not None:
                scalars[f"ood_{name}_{check}"] = results["model"]["rate"]
    return scalars
