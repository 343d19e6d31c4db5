"""Build the Triton model repository for a gated model: tokenizer → classifier → postprocess, as one ensemble.

One description renders two variants: `production` (classifier on Triton's onnxruntime backend,
KIND_GPU) and `local` (classifier as a python-backend model calling onnxruntime on the same file,
because the tritonserver shipped in nvidia-pytriton has no onnxruntime backend). Everything else
is identical. The builder refuses a model the gate did not pass, or whose files differ from what
the gate judged.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiergate.errors import PromotionRefused
from tiergate.gate import GateRecord, load_gate
from tiergate.hashing import read_json, sha256_file, sha256_json, write_json
from tiergate.inference import THRESHOLDS_FILE, ThresholdSet
from tiergate.profiles import ServingSettings
from tiergate.taxonomy import Taxonomy

MODELS_DIR = Path(__file__).resolve().parent / "triton_models"
MANIFEST = "repository.json"
ONNX_TYPES = {"input_ids": "TYPE_INT64", "attention_mask": "TYPE_INT64", "token_type_ids": "TYPE_INT64"}



@dataclass(frozen=True)
class RepositorySpec:
    """Everything the four model configs are rendered from."""

    name: str
    labels: list[str]
    input_names: list[str]
    max_length: int
    settings: ServingSettings
    audiences: list[str]
    surfaces: list[str]
    model_version: str
    taxonomy_sha256: str
    gate_digest: str


def verify_gate(gate: GateRecord, export_dir: Path, evaluation_dir: Path) -> None:
    """Refuse unless the gate passed and every judged file is byte-identical to what is packaged."""
    gate.require_passed("refusing to package")
    judged = gate.judged
    checks = {
        "model": (export_dir / judged.model_file, judged.model_sha256),
        "thresholds": (evaluation_dir / THRESHOLDS_FILE, judged.thresholds_sha256),
        "tokenizer": (export_dir / "tokenizer" / "tokenizer.json", judged.tokenizer_sha256),
    }
    for what, (path, expected) in checks.items():
        if not path.is_file():
            raise PromotionRefused(f"{what} file {path} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise PromotionRefused(f"{what} {path.name} has sha256 {actual[:12]} but the gate judged {expected[:12]}; refusing")


def _dims(value: int) -> str:
    return f"[ {value} ]"


def _io(kind: str, name: str, data_type: str, dims: int, extra: str = "") -> str:
    return f'{kind} {{\n  name: "{name}"\n  data_type: {data_type}\n  dims: {_dims(dims)}{extra}\n}}'


def _parameters(values: dict[str, str]) -> str:
    return "\n".join(
        f'parameters {{\n  key: "{key}"\n  value: {{ string_value: {json.dumps(value)} }}\n}}'
        for key, value in sorted(values.items())
    )


def _batching(spec: RepositorySpec, preferred: bool) -> str:
    sizes = ""
    if preferred:
        sizes = f"\n  preferred_batch_size: [ {', '.join(map(str, spec.settings.preferred_batch_sizes))} ]"
    return f"dynamic_batching {{{sizes}\n  max_queue_delay_microseconds: {spec.settings.max_queue_delay_us}\n}}"


def render_tokenizer(spec: RepositorySpec) -> str:
    outputs = [_io("output", name, ONNX_TYPES[name], spec.max_length) for name in spec.input_names]
    outputs.append(_io("output", "TRUNCATED", "TYPE_BOOL", 1))
    return (
        "\n".join(
            [
                'name: "tokenizer"',
                'backend: "python"',
                f"max_batch_size: {spec.settings.max_batch_size}",
                _io("input", "TEXT", "TYPE_STRING", 1),
                _io("input", "CONTEXT", "TYPE_STRING", 1),
                *outputs,
                f"instance_group [ {{ kind: KIND_CPU count: {spec.settings.instance_count} }} ]",
                _batching(spec, False),
                _parameters(
                    {
                        "max_length": str(spec.max_length),
                        "input_names": json.dumps(spec.input_names),
                        "max_text_chars": str(spec.settings.max_text_chars),
                        "audiences": json.dumps(spec.audiences),
                        "surfaces": json.dumps(spec.surfaces),
                    }
                ),
            ]
        )
        + "\n"
    )


def render_classifier(spec: RepositorySpec) -> str:
    production = spec.settings.variant == "production"
    # production: Triton's onnxruntime backend loads 1/model.onnx; local: the python backend loads 1/model.py,
    # which opens the same 1/model.onnx with onnxruntime.
    header = [
        'name: "classifier"',
        'platform: "onnxruntime_onnx"' if production else 'backend: "python"',
        f"max_batch_size: {spec.settings.max_batch_size}",
    ]
    kind = "KIND_GPU" if production else "KIND_CPU"
    return (
        "\n".join(
            [
                *header,
                *[_io("input", name, ONNX_TYPES[name], spec.max_length) for name in spec.input_names],
                _io("output", "logits", "TYPE_FP32", len(spec.labels)),
                f"instance_group [ {{ kind: {kind} count: {spec.settings.instance_count} }} ]",
                _batching(spec, True),
            ]
        )
        + "\n"
    )


def render_postprocess(spec: RepositorySpec) -> str:
    return (
        "\n".join(
            [
                'name: "postprocess"',
                'backend: "python"',
                f"max_batch_size: {spec.settings.max_batch_size}",
                _io("input", "logits", "TYPE_FP32", len(spec.labels)),
                _io("output", "SCORES", "TYPE_FP32", len(spec.labels), '\n  label_filename: "labels.txt"'),
                _io("output", "FLAGS", "TYPE_BOOL", len(spec.labels)),
                _io("output", "MAX_TIER", "TYPE_INT32", 1),
                f"instance_group [ {{ kind: KIND_CPU count: {spec.settings.instance_count} }} ]",
                _batching(spec, False),
                _parameters({"optional_disabled": json.dumps(spec.settings.optional_disabled)}),
            ]
        )
        + "\n"
    )


def _step(model: str, inputs: list[str], outputs: list[str]) -> str:
    maps = [f'    input_map {{ key: "{name}" value: "{name}" }}' for name in inputs]
    maps += [f'    output_map {{ key: "{name}" value: "{name}" }}' for name in outputs]
    return "  step {\n" + f'    model_name: "{model}"\n    model_version: -1\n' + "\n".join(maps) + "\n  }"


def render_ensemble(spec: RepositorySpec) -> str:
    labels = len(spec.labels)
    steps = [
        _step("tokenizer", ["TEXT", "CONTEXT"], [*spec.input_names, "TRUNCATED"]),
        _step("classifier", spec.input_names, ["logits"]),
        _step("postprocess", ["logits"], ["SCORES", "FLAGS", "MAX_TIER"]),
    ]
    return (
        "\n".join(
            [
                f'name: "{spec.name}"',
                'platform: "ensemble"',
                f"max_batch_size: {spec.settings.max_batch_size}",
                _io("input", "TEXT", "TYPE_STRING", 1),
                _io("input", "CONTEXT", "TYPE_STRING", 1),
                _io("output", "SCORES", "TYPE_FP32", labels),
                _io("output", "FLAGS", "TYPE_BOOL", labels),
                _io("output", "MAX_TIER", "TYPE_INT32", 1),
                _io("output", "TRUNCATED", "TYPE_BOOL", 1),
                "ensemble_scheduling {\n" + "\n".join(steps) + "\n}",
                _parameters(
                    {
                        "labels": json.dumps(spec.labels),
                        "model_version": spec.model_version,
                        "taxonomy_sha256": spec.taxonomy_sha256,
                        "gate_digest": spec.gate_digest,
                        "contexts": json.dumps({"audiences": spec.audiences, "surfaces": spec.surfaces}),
                    }
                ),
            ]
        )
        + "\n"
    )


def build_repository(
    taxonomy: Taxonomy, settings: ServingSettings, export_dir: Path, evaluation_dir: Path, out_dir: Path, model_version: str
) -> dict[str, Any]:
    """The packaging step: refuse unless the gate passed on exactly these files, then write the repository."""
    gate = load_gate(Path(evaluation_dir))
    verify_gate(gate, Path(export_dir), Path(evaluation_dir))
    return write_repository(taxonomy, settings, export_dir, evaluation_dir, out_dir, model_version, gate)


def write_repository(
    taxonomy: Taxonomy,
    settings: ServingSettings,
    export_dir: Path,
    evaluation_dir: Path,
    out_dir: Path,
    model_version: str,
    gate: GateRecord,
) -> dict[str, Any]:
    """Write the repository to `out_dir` and return its manifest (content digest included). No gate check here."""
    export_dir, evaluation_dir, out_dir = Path(export_dir), Path(evaluation_dir), Path(out_dir)
    thresholds = ThresholdSet.load(evaluation_dir / THRESHOLDS_FILE, taxonomy.labels)
    model_json = read_json(export_dir / "model.json")
    unknown = set(settings.optional_disabled) - set(thresholds.optional)
    if unknown:
        raise PromotionRefused(f"serving.optional_disabled names non-optional categories {sorted(unknown)}")
    spec = RepositorySpec(
        name=settings.model_name,
        labels=taxonomy.labels,
        input_names=model_json["input_names"],
        max_length=int(model_json["max_length"]),
        settings=settings,
        audiences=list(taxonomy.contexts.audiences),
        surfaces=list(taxonomy.contexts.surfaces),
        model_version=model_version,
        taxonomy_sha256=taxonomy.sha256,
        gate_digest=gate.digest(),
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    layout = {
        "tokenizer": (render_tokenizer(spec), "tokenizer.py"),
        "classifier": (render_classifier(spec), "classifier.py" if settings.variant == "local" else None),
        "postprocess": (render_postprocess(spec), "postprocess.py"),
        spec.name: (render_ensemble(spec), None),
    }
    for model, (config, code) in layout.items():
        version = out_dir / model / "1"
        version.mkdir(parents=True)
        (out_dir / model / "config.pbtxt").write_text(config, encoding="utf-8")
        if code:
            shutil.copyfile(MODELS_DIR / code, version / "model.py")
    shutil.copytree(export_dir / "tokenizer", out_dir / "tokenizer" / "1" / "tokenizer")
    shutil.copyfile(export_dir / gate.judged.model_file, out_dir / "classifier" / "1" / "model.onnx")
    shutil.copyfile(evaluation_dir / THRESHOLDS_FILE, out_dir / "postprocess" / "1" / THRESHOLDS_FILE)
    (out_dir / "postprocess" / "labels.txt").write_text("\n".join(taxonomy.labels) + "\n", encoding="utf-8")
    (out_dir / spec.name / "1" / ".keep").write_text("", encoding="utf-8")

    files = {str(path.relative_to(out_dir)): sha256_file(path) for path in sorted(out_dir.rglob("*")) if path.is_file()}
    manifest = {
        "model_name": spec.name,
        "model_version": model_version,
        "variant": settings.variant,
        "labels": taxonomy.labels,
        "taxonomy_sha256": taxonomy.sha256,
        "gate_digest": spec.gate_digest,
        "gate_summary": gate.summary.model_dump(mode="json"),
        "files": files,
        "digest": sha256_json(files),
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest
