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
    public_data_dir: str = "",
    previous_model_dir: str = "",
) -> NamedTuple("GateOutputs", [("gate_passed", bool), ("decision", str)]):  # type: ignore[valid-type]
    """Thresholds, test metrics, regression vectors and the gate, judged on the `evaluate.variant` model.

    `public_data_dir`: a folder holding xstest/ and simplesafetytests/ for the out-of-distribution
    checks; `previous_model_dir`: the previously promoted model's Triton repository, compared per
    category. Empty means none: the report says the checks were not run / this is the first model.
    """
    import json
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from tiergate.artifacts import EVAL_METRICS, KFP_METRICS, REPORT_HTML, REPORT_MD
    from tiergate.components.evaluate.step import evaluate_model
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    out = Path(evaluation.path)
    resolved = load_profile(profile)
    gate = evaluate_model(
        load_taxonomy(),
        resolved,
        Path(onnx_model.path),
        Path(data.path),
        out,
        overwrite=True,
        public_data_dir=Path(public_data_dir) if public_data_dir else None,
        previous_model_dir=Path(previous_model_dir) if previous_model_dir else None,
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
