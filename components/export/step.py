"""The export step: checkpoint → `model.onnx` (fp32) + `model_fp16.onnx`, parity-gated, with a report.

The served variant is fp16 (docs/lessons.md#fp16-served). INT8 is optional and is never shipped unless its
own parity passes: INT8, static and dynamic, destroyed mpnet (docs/lessons.md#int8-destroys-mpnet).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tiergate.artifacts import EXPORT_INFO, EXPORT_REPORT, EXPORT_REPORT_MD, ONNX_FILES, TOKENIZER_DIR, VAL_SPLIT
from tiergate.components.export.onnx_io import convert_fp16, export_fp32, write_metadata
from tiergate.components.export.parity import ParityResult, batched, compare_logits, describe_failure
from tiergate.components.train.checkpoint import CheckpointInfo, load_checkpoint_info
from tiergate.datasets import load_manifest
from tiergate.errors import InputDataError, LabelMismatchError, ParityError
from tiergate.exports import ExportManifest, checkpoint_sha256, require_same_dataset, write_export_manifest
from tiergate.hashing import folder_digests, sha256_file, write_json
from tiergate.onnx_model import check_onnx_labels, open_session, run_logits
from tiergate.outputs import atomic_output
from tiergate.preprocessing import PREPROCESSING_VERSION, InputEncoder, Padding
from tiergate.profiles import ExportSettings, ParitySettings, Profile, WindowSettings
from tiergate.records import Context, read_jsonl
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)
INT8_WARNING = (
    "INT8 quantisation is experimental here. INT8, static and dynamic, destroys all-mpnet-base-v2 "
    "(docs/lessons.md#int8-destroys-mpnet): near-zero outputs, 7 categories below the gate. "
    "tiergate serves fp16; an INT8 file is "
    "kept only when its parity passes, and is never what the pipeline ships."
)
SERVED_VARIANT = "fp16"
GATED_VARIANTS = ("fp32", "fp16")  # a parity failure of either fails the step; INT8 is only dropped
# Parity and latency batches are padded to their longest text: padding is masked, so parity is a
# property of the graph, not of the padding. Serving pads to max_length (tiergate.inference.Preprocessor).
EXPORT_PADDING: Padding = "longest"
ONNX_INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")  # the graph's inputs, when the tokenizer has them
# variant: (check name, reference runner, candidate runner)
PARITY_CHECKS = {
    "fp32": ("onnx-fp32 vs pytorch", "pytorch", "onnx_fp32"),
    "fp16": ("onnx-fp16 vs onnx-fp32", "onnx_fp32", "onnx_fp16"),
    "int8": ("onnx-int8 vs onnx-fp32", "onnx_fp32", "onnx_int8"),
}
Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class TrainedModel:
    """The checkpoint being exported: its metadata, the PyTorch reference model and its encoder."""

    info: CheckpointInfo
    model: torch.nn.Module
    input_names: list[str]  # what the ONNX graph takes, in ONNX_INPUT_ORDER
    encoder: InputEncoder  # padded by EXPORT_PADDING, yields only `input_names`


@dataclass
class ParityProbe:
    """The validation texts every variant is run on: raw (to re-encode), formatted (for reports), batched."""

    texts: list[str]
    contexts: list[Context]
    formatted: list[str]
    batches: list[dict[str, np.ndarray]]


def export_model(
    taxonomy: Taxonomy, profile: Profile, checkpoint_dir: Path, data_dir: Path, out_dir: Path, overwrite: bool = False
) -> dict[str, Any]:
    """Export, check parity on validation texts, measure latency; raises ParityError on a failed gate.

    The checkpoint must have been trained on `data_dir` (its manifest is loaded and verified). The
    output is written whole (`tiergate.outputs.atomic_output`), reports and `export_manifest.json`
    included, before the parity gate is enforced, so a failed export explains itself and is
    recorded as failed: evaluation refuses it.
    """
    dataset = load_manifest(Path(data_dir), taxonomy)
    trained = load_trained_model(Path(checkpoint_dir), taxonomy)
    require_same_dataset(trained.info.dataset_sha256.get("merged", "none"), dataset.dataset_sha256, Path(data_dir), "checkpoint")
    with atomic_output(Path(out_dir), overwrite, inputs=[Path(checkpoint_dir), Path(data_dir)]) as staging:
        report, parity = export_into(taxonomy, profile, trained, Path(data_dir), staging)
        write_export_manifest(
            staging, describe_export(taxonomy, trained, Path(checkpoint_dir), dataset.dataset_sha256, parity, staging)
        )
    enforce_parity_gate(parity)
    return report


def export_into(
    taxonomy: Taxonomy, profile: Profile, trained: TrainedModel, data_dir: Path, out_dir: Path
) -> tuple[dict[str, Any], dict[str, ParityResult]]:
    """Every file of the export, parity judged and reported (not yet enforced)."""
    settings = profile.export
    paths = {name: out_dir / file for name, file in ONNX_FILES.items()}
    metadata = onnx_metadata(taxonomy, trained, settings.windows)
    write_gated_variants(trained, paths, metadata, taxonomy, settings.opset)
    trained.encoder.tokenizer.save_pretrained(str(out_dir / TOKENIZER_DIR))

    probe = parity_probe(trained.encoder, data_dir, settings.parity)
    runners = variant_runners(trained.model, paths)
    if settings.int8.enabled:
        runners["onnx_int8"] = quantize_int8(paths, metadata)
    parity = judge_parity(runners, probe, taxonomy.labels, settings.parity)
    # Latency batches use the profile's max_length, parity the checkpoint's (equal when export runs with the training profile).
    latency_encoder = InputEncoder(trained.encoder.tokenizer, profile.train.max_length, EXPORT_PADDING, trained.input_names)
    latency = measure_latency(runners, latency_encoder, probe, settings)

    report = build_report(taxonomy, trained, settings, probe, describe_variants(paths, parity), latency)
    if "int8" in parity and not parity["int8"].passed:
        drop_failed_int8(paths["int8"], report)
    write_reports(out_dir, report, metadata, parity)
    return report, parity


def describe_export(
    taxonomy: Taxonomy,
    trained: TrainedModel,
    checkpoint_dir: Path,
    dataset_sha256: str,
    parity: dict[str, ParityResult],
    out_dir: Path,
) -> ExportManifest:
    """The lineage record evaluation and packaging read: checkpoint, data, parity verdicts, file digests."""
    return ExportManifest(
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.labels_sha256,
        checkpoint_sha256=checkpoint_sha256(checkpoint_dir),
        dataset_sha256=dataset_sha256,
        parity={name: result.passed for name, result in parity.items()},
        parity_passed=all(parity[name].passed for name in GATED_VARIANTS),
        files=folder_digests(out_dir),
    )


def load_trained_model(checkpoint_dir: Path, taxonomy: Taxonomy) -> TrainedModel:
    """The checkpoint's model in eval mode and its tokenizer; refused unless its labels are the taxonomy's."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    info = load_checkpoint_info(checkpoint_dir, taxonomy)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint_dir)).eval()
    check_id2label(model.config.id2label, taxonomy, checkpoint_dir)
    input_names = [name for name in ONNX_INPUT_ORDER if name in tokenizer.model_input_names]
    return TrainedModel(info, model, input_names, InputEncoder(tokenizer, info.max_length, EXPORT_PADDING, input_names))


def check_id2label(id2label: dict[int, str], taxonomy: Taxonomy, checkpoint_dir: Path) -> None:
    """The weights' own label map (config.json) must be the taxonomy's labels in order, not only the metadata."""
    ordered = [id2label.get(index) for index in range(len(id2label))]
    if ordered != taxonomy.labels:
        raise LabelMismatchError(f"{checkpoint_dir}/config.json id2label is not the taxonomy's labels in order; refusing")


def onnx_metadata(taxonomy: Taxonomy, trained: TrainedModel, windows: WindowSettings) -> dict[str, Any]:
    """What every ONNX file embeds and `model.json` repeats: labels, taxonomy hash, inputs, how texts are read, provenance.

    The windowing and the preprocessing version travel with the model, so evaluation and serving
    read a text exactly as the gate judged it (tiergate.preprocessing).
    """
    return {
        "window_stride": str(windows.stride),
        "max_windows": str(windows.max_windows),
        "preprocessing_version": PREPROCESSING_VERSION,
        "vocab_size": str(len(trained.encoder.tokenizer)),  # the served classifier refuses ids outside it
        "labels": taxonomy.labels,
        "taxonomy_sha256": taxonomy.labels_sha256,
        "max_length": str(trained.info.max_length),
        "base_model": trained.info.base_model,
        "input_names": trained.input_names,
        "phase": trained.info.phase,
    }


def write_gated_variants(
    trained: TrainedModel, paths: dict[str, Path], metadata: dict[str, Any], taxonomy: Taxonomy, opset: int
) -> None:
    """fp32 and fp16 ONNX, each with embedded metadata that is read back and checked against the taxonomy."""
    export_fp32(trained.model, trained.input_names, paths["fp32"], opset)
    convert_fp16(paths["fp32"], paths["fp16"])
    for name in GATED_VARIANTS:
        write_metadata(paths[name], {**metadata, "variant": name})
        check_onnx_labels(paths[name], taxonomy)


def parity_probe(encoder: InputEncoder, data_dir: Path, limits: ParitySettings) -> ParityProbe:
    """Up to `max_texts` validation records in a stable order, encoded in `batch_size` batches."""
    records = sorted(read_jsonl(data_dir / VAL_SPLIT), key=lambda record: (record.id, str(record.context)))
    records = records[: limits.max_texts]
    if not records:
        raise InputDataError(f"{data_dir}: {VAL_SPLIT} is empty; parity is judged on validation texts")
    texts, contexts = [record.text for record in records], [record.context for record in records]
    batches = [
        encoder.encode(texts[start : start + limits.batch_size], contexts[start : start + limits.batch_size])
        for start in range(0, len(texts), limits.batch_size)
    ]
    return ParityProbe(texts, contexts, encoder.format(texts, contexts), batches)


def torch_runner(model: torch.nn.Module) -> Runner:
    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return model(**{name: torch.from_numpy(value) for name, value in batch.items()}).logits.numpy()

    return run


def onnx_runner(path: Path) -> Runner:
    session = open_session(path)
    return lambda batch: run_logits(session, batch)


def variant_runners(model: torch.nn.Module, paths: dict[str, Path]) -> dict[str, Runner]:
    """The PyTorch reference and the gated ONNX variants, each as batch → logits."""
    return {"pytorch": torch_runner(model), **{f"onnx_{name}": onnx_runner(paths[name]) for name in GATED_VARIANTS}}


def quantize_int8(paths: dict[str, Path], metadata: dict[str, Any]) -> Runner:
    """Dynamic INT8 from the fp32 file, for comparison only (never served); warns why."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(paths["fp32"]), str(paths["int8"]), weight_type=QuantType.QInt8)
    write_metadata(paths["int8"], {**metadata, "variant": "int8"})
    log.warning(INT8_WARNING)
    return onnx_runner(paths["int8"])


def judge_parity(
    runners: dict[str, Runner], probe: ParityProbe, labels: list[str], limits: ParitySettings
) -> dict[str, ParityResult]:
    """Each variant that was exported against its reference, on the same validation batches, with its own limit."""
    logits = {name: batched(run, probe.batches) for name, run in runners.items()}
    limit = {
        "fp32": limits.max_abs_logit_diff_fp32,
        "fp16": limits.max_abs_logit_diff_fp16,
        "int8": limits.max_abs_logit_diff_int8,
    }
    return {
        variant: compare_logits(
            check,
            logits[reference],
            logits[candidate],
            probe.formatted,
            labels,
            limit[variant],
            limits.min_decision_agreement,
            limits.decision_threshold,
            worst_count=limits.worst_examples,
        )
        for variant, (check, reference, candidate) in PARITY_CHECKS.items()
        if candidate in logits
    }


def _median_ms(run: Any, batch: dict[str, np.ndarray], repeats: int) -> float:
    run(batch)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def measure_latency(
    runners: dict[str, Runner], encoder: InputEncoder, probe: ParityProbe, settings: ExportSettings
) -> list[dict[str, Any]]:
    """Median ms per batch for every runner, measured side by side on the same batches."""
    rows = []
    for size in settings.latency.batch_sizes:
        repeat = size // max(len(probe.texts), 1) + 1
        batch = encoder.encode((probe.texts * repeat)[:size], (probe.contexts * repeat)[:size])
        row: dict[str, Any] = {"batch_size": size}
        for name, run in runners.items():
            row[f"{name}_ms"] = round(_median_ms(run, batch, settings.latency.repeats), 3)
        base = row.get("pytorch_ms") or 0.0
        for name in runners:
            if name != "pytorch" and base:
                row[f"speedup_{name}_vs_pytorch"] = round(base / row[f"{name}_ms"], 3)
        rows.append(row)
    return rows


def describe_variants(paths: dict[str, Path], parity: dict[str, ParityResult]) -> dict[str, dict[str, Any]]:
    """File, size, digest and parity of every variant that was judged."""
    return {
        name: {
            "file": paths[name].name,
            "size_bytes": paths[name].stat().st_size,
            "sha256": sha256_file(paths[name]),
            "parity": result.as_dict(),
        }
        for name, result in parity.items()
    }


def build_report(
    taxonomy: Taxonomy,
    trained: TrainedModel,
    settings: ExportSettings,
    probe: ParityProbe,
    variants: dict[str, dict[str, Any]],
    latency: list[dict[str, Any]],
) -> dict[str, Any]:
    info = trained.info
    return {
        "labels": taxonomy.labels,
        "taxonomy_sha256": taxonomy.labels_sha256,
        "base_model": info.base_model,
        "max_length": info.max_length,
        "input_names": trained.input_names,
        "opset": settings.opset,
        "parity_texts": len(probe.texts),
        "variants": variants,
        "latency": latency,
        "served_variant": SERVED_VARIANT,
        "int8_note": INT8_WARNING if "int8" in variants else None,
        "checkpoint": {"phase": info.phase, "best": {k: v for k, v in info.best.items() if not k.startswith("eval_f1_")}},
    }


def drop_failed_int8(path: Path, report: dict[str, Any]) -> None:
    """An INT8 file that failed parity is deleted, so nothing downstream can pick it up."""
    path.unlink()
    report["variants"]["int8"]["file"] = None
    report["int8_note"] = f"{INT8_WARNING} This INT8 export FAILED parity and was deleted."


def write_reports(out_dir: Path, report: dict[str, Any], metadata: dict[str, Any], parity: dict[str, ParityResult]) -> None:
    """`export_report.json` / `.md` for people, `model.json` for the steps that load the export."""
    write_json(out_dir / EXPORT_REPORT, report)
    (out_dir / EXPORT_REPORT_MD).write_text(_render_markdown(report), encoding="utf-8")
    variants = report["variants"].items()
    files = {name: {"file": entry["file"], "sha256": entry["sha256"]} for name, entry in variants if entry["file"]}
    write_json(
        out_dir / EXPORT_INFO,
        {**metadata, "files": files, "served_variant": SERVED_VARIANT, "parity": {n: r.passed for n, r in parity.items()}},
    )


def enforce_parity_gate(parity: dict[str, ParityResult]) -> None:
    """Raise ParityError, with the worst examples, unless fp32 and fp16 both passed."""
    for name in GATED_VARIANTS:
        if not parity[name].passed:
            raise ParityError(describe_failure(parity[name]))
    log.info(
        "export: fp32 max|diff| %.2e, fp16 max|diff| %.2e, agreement %.4f",
        parity["fp32"].max_abs_diff,
        parity["fp16"].max_abs_diff,
        parity["fp16"].decision_agreement,
    )


def _render_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# tiergate export report",
        "",
        f"Base model: `{report['base_model']}`, max length {report['max_length']}",
        "",
        "| variant | file | size (MB) | parity | max abs logit diff | decision agreement |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in report["variants"].items():
        parity = entry.get("parity") or {}
        lines.append(
            f"| {name} | {entry['file']} | {entry['size_bytes'] / 1e6:.2f} | "
            f"{'pass' if parity.get('passed', True) else 'FAIL'} | {parity.get('max_abs_diff', 0):.3g} | "
            f"{parity.get('decision_agreement', 1):.4f} |"
        )
    lines += ["", "## CPU latency (median ms per batch, measured side by side)", ""]
    if report["latency"]:
        keys = [key for key in report["latency"][0] if key != "batch_size"]
        lines += ["| batch | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        lines += [
            f"| {row['batch_size']} | " + " | ".join(str(row.get(key, "")) for key in keys) + " |" for row in report["latency"]
        ]
    if "int8" in report["variants"] or report.get("int8_note"):
        lines += ["", f"> {INT8_WARNING}"]
    return "\n".join(lines) + "\n"
