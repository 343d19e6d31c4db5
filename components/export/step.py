"""The export step: checkpoint → `model.onnx` (fp32) + `model_fp16.onnx`, parity-gated, with a report.

The served variant is fp16 (docs/lessons.md#fp16-served). INT8 is optional and is never shipped unless its
own parity passes: INT8, static and dynamic, destroyed mpnet (docs/lessons.md#int8-destroys-mpnet).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tiergate.components.export.onnx_io import check_onnx_labels, convert_fp16, export_fp32, run_session, session, write_metadata
from tiergate.components.export.parity import batched, compare_logits, describe_failure
from tiergate.components.train.checkpoint import load_checkpoint_info

from tiergate.errors import InputDataError, ParityError
from tiergate.formatting import format_input
from tiergate.hashing import sha256_file, write_json
from tiergate.profiles import Profile
from tiergate.records import read_jsonl
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)
INT8_WARNING = (
    "INT8 quantisation is experimental here. INT8, static and dynamic, destroys all-mpnet-base-v2 "
    "(docs/lessons.md#int8-destroys-mpnet): near-zero outputs, 7 categories below the gate. "
    "tiergate serves fp16; an INT8 file is "
    "kept only when its parity passes, and is never what the pipeline ships."
)
VARIANTS = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx"}
PARITY_BATCH = 64


def _encode(tokenizer: Any, texts: list[str], max_length: int, input_names: list[str], size: int) -> list[dict[str, np.ndarray]]:
    batches = []
    for start in range(0, len(texts), size):
        encoded = tokenizer(
            texts[start : start + size], truncation=True, max_length=max_length, padding=True, return_tensors="np"
        )
        batches.append({name: encoded[name] for name in input_names})
    return batches


def _torch_runner(model: torch.nn.Module) -> Any:
    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return model(**{name: torch.from_numpy(value) for name, value in batch.items()}).logits.numpy()

    return run


def _median_ms(run: Any, batch: dict[str, np.ndarray], repeats: int) -> float:
    run(batch)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def measure_latency(
    runners: dict[str, Any], tokenizer: Any, texts: list[str], profile: Profile, input_names: list[str]
) -> list[dict[str, Any]]:
    """Median ms per batch for every runner, measured side by side on the same batches."""
    rows = []
    for size in profile.export.latency.batch_sizes:
        sample = (texts * (size // max(len(texts), 1) + 1))[:size]
        batch = _encode(tokenizer, sample, profile.train.max_length, input_names, size)[0]
        row: dict[str, Any] = {"batch_size": size}
        for name, run in runners.items():
            row[f"{name}_ms"] = round(_median_ms(run, batch, profile.export.latency.repeats), 3)
        base = row.get("pytorch_ms") or 0.0
        for name in runners:
            if name != "pytorch" and base:
                row[f"speedup_{name}_vs_pytorch"] = round(base / row[f"{name}_ms"], 3)
        rows.append(row)
    return rows


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


def export_model(taxonomy: Taxonomy, profile: Profile, checkpoint_dir: Path, data_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Export, check parity on validation texts, measure latency; raises ParityError on a failed gate."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    info = load_checkpoint_info(Path(checkpoint_dir), taxonomy)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint_dir)).eval()
    input_names: list[str] = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    settings = profile.export
    metadata = {
        "labels": taxonomy.labels,
        "taxonomy_sha256": taxonomy.sha256,
        "max_length": str(info.max_length),
        "base_model": info.base_model,
        "input_names": input_names,
        "phase": info.phase,
    }

    paths = {name: out_dir / file for name, file in VARIANTS.items()}
    export_fp32(model, input_names, paths["fp32"], settings.opset)
    convert_fp16(paths["fp32"], paths["fp16"])
    for name in ("fp32", "fp16"):
        write_metadata(paths[name], {**metadata, "variant": name})
        check_onnx_labels(paths[name], taxonomy)
    tokenizer.save_pretrained(str(out_dir / "tokenizer"))

    records = sorted(read_jsonl(Path(data_dir) / "val.jsonl"), key=lambda record: (record.id, str(record.context)))
    texts = [format_input(record.text, record.context) for record in records[: settings.parity.max_texts]]
    if not texts:
        raise InputDataError(f"{data_dir}: val.jsonl is empty; parity is judged on validation texts")
    batches = _encode(tokenizer, texts, info.max_length, input_names, PARITY_BATCH)
    sessions = {name: session(paths[name]) for name in ("fp32", "fp16")}
    logits = {
        "pytorch": batched(_torch_runner(model), batches),
        "fp32": batched(lambda batch: run_session(sessions["fp32"], batch), batches),
        "fp16": batched(lambda batch: run_session(sessions["fp16"], batch), batches),
    }
    limits = settings.parity
    parity = {
        "fp32": compare_logits(
            "onnx-fp32 vs pytorch",
            logits["pytorch"],
            logits["fp32"],
            texts,
            taxonomy.labels,
            limits.max_abs_logit_diff_fp32,
            limits.min_decision_agreement,
            limits.decision_threshold,
        ),
        "fp16": compare_logits(
            "onnx-fp16 vs onnx-fp32",
            logits["fp32"],
            logits["fp16"],
            texts,
            taxonomy.labels,
            limits.max_abs_logit_diff_fp16,
            limits.min_decision_agreement,
            limits.decision_threshold,
        ),
    }
    runners: dict[str, Any] = {"pytorch": _torch_runner(model)}
    runners.update({f"onnx_{name}": (lambda batch, s=sess: run_session(s, batch)) for name, sess in sessions.items()})

    int8_note = None
    if settings.int8.enabled:
        quantize_dynamic(str(paths["fp32"]), str(paths["int8"]), weight_type=QuantType.QInt8)
        write_metadata(paths["int8"], {**metadata, "variant": "int8"})
        int8_session = session(paths["int8"])
        int8_logits = batched(lambda batch: run_session(int8_session, batch), batches)
        parity["int8"] = compare_logits(
            "onnx-int8 vs onnx-fp32",
            logits["fp32"],
            int8_logits,
            texts,
            taxonomy.labels,
            limits.max_abs_logit_diff_fp16,
            limits.min_decision_agreement,
            limits.decision_threshold,
        )
        runners["onnx_int8"] = lambda batch: run_session(int8_session, batch)
        int8_note = INT8_WARNING
        log.warning(INT8_WARNING)

    latency = measure_latency(runners, tokenizer, texts, profile, input_names)
    variants = {}
    for name, result in parity.items():
        variants[name] = {
            "file": paths[name].name,
            "size_bytes": paths[name].stat().st_size,
            "sha256": sha256_file(paths[name]),
            "parity": result.as_dict(),
        }
    report: dict[str, Any] = {
        "labels": taxonomy.labels,
        "taxonomy_sha256": taxonomy.sha256,
        "base_model": info.base_model,
        "max_length": info.max_length,
        "input_names": input_names,
        "opset": settings.opset,
        "parity_texts": len(texts),
        "variants": variants,
        "latency": latency,
        "served_variant": "fp16",
        "int8_note": int8_note,
        "checkpoint": {"phase": info.phase, "best": {k: v for k, v in info.best.items() if not k.startswith("eval_f1_")}},
    }
    if "int8" in parity and not parity["int8"].passed:
        paths["int8"].unlink()
        variants["int8"]["file"] = None
        report["int8_note"] = f"{INT8_WARNING} This INT8 export FAILED parity and was deleted."
    write_json(out_dir / "export_report.json", report)
    (out_dir / "export_report.md").write_text(_render_markdown(report), encoding="utf-8")
    write_json(
        out_dir / "model.json",
        {
            **metadata,
            "files": {
                name: {"file": entry["file"], "sha256": entry["sha256"]} for name, entry in variants.items() if entry["file"]
            },
            "served_variant": "fp16",
            "parity": {n: r.passed for n, r in parity.items()},
        },
    )
    for name in ("fp32", "fp16"):
        if not parity[name].passed:
            raise ParityError(describe_failure(parity[name]))
    log.info(
        "export: fp32 max|diff| %.2e, fp16 max|diff| %.2e, agreement %.4f",
        parity["fp32"].max_abs_diff,
        parity["fp16"].max_abs_diff,
        parity["fp16"].decision_agreement,
    )
    return report
