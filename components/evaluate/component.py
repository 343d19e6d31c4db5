"""KFP wrapper for the evaluate step: the gate decision becomes a pipeline output."""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(
    profile: str,
    onnx_model: Input[Model],
    data: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    routing: Output[ClassificationMetrics],
    report: Output[HTML],
    summary: Output[Markdown],
    public_data: str = "",
    previous_model: str = "",
) -> NamedTuple("GateOutputs", [("gate_passed", bool), ("decision", str)]):  # type: ignore[valid-type]
    """Thresholds, test metrics, regression vectors and the gate, judged on the `evaluate.variant` model.

    `public_data`: the run's public-data location (a folder, pvc://, s3:// or gs://) whose xstest/ and
    simplesafetytests/ are the out-of-distribution checks; `previous_model`: the promoted model's
    storageUri (or repository folder), compared per category. Empty means none: the report says the
    checks were not run / this is the first model.
    """
    import json
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from tiergate.artifacts import EVAL_METRICS, KFP_METRICS, REPORT_HTML, REPORT_MD
    from tiergate.components.evaluate.step import evaluate_model
    from tiergate.components.generate.public_step import check_location, local_folder
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.store import previous_repository
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    out = Path(evaluation.path)
    resolved = load_profile(profile)
    location = check_location(public_data)
    with (
        local_folder(location, resolved.publish, evaluation_only=True) as public_folder,
        previous_repository(previous_model, resolved.publish) as previous_folder,
    ):
        gate = evaluate_model(
            load_taxonomy(),
            resolved,
            Path(onnx_model.path),
            Path(data.path),
            out,
            overwrite=True,
            public_data_dir=public_folder if location else None,
            previous_model_dir=previous_folder,
        )
    for key, value in json.loads((out / KFP_METRICS).read_text()).items():
        metrics.log_metric(key, value)
    confusion = json.loads((out / EVAL_METRICS).read_text())["routing_confusion"]
    routing.log_confusion_matrix(confusion["labels"], confusion["matrix"])
    shutil.copyfile(out / REPORT_HTML, report.path)
    shutil.copyfile(out / REPORT_MD, summary.path)
    evaluation.metadata.update(
        {
            "decision": gate.decision,
            "macro_f1": gate.summary.macro_f1,
            "evaluated_variant": resolved.evaluate.variant,
            "model_file": gate.judged.model_file,
        }
    )
    outputs = namedtuple("outputs", ["gate_passed", "decision"])
    return outputs(gate.passed, gate.decision)


def not_promoted(evaluation: Input[Artifact], result: Output[Markdown]) -> None:
    """The gate said no: a clear, green ending that says why, with the failing rules."""
    from pathlib import Path

    from tiergate.gate import load_gate

    gate = load_gate(Path(evaluation.path))
    lines = [
        "# Not promoted",
        "",
        f"The gate rejected this model (macro F1 {gate.summary.macro_f1}).",
        "",
        "Failing rules:",
        "",
    ]
    lines += [f"- `{rule.rule}`: {rule.value}" for rule in gate.failures]
    Path(result.path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
