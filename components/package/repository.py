"""Build the Triton model repository for a gated model: tokenizer → classifier → postprocess, as one ensemble.

The repository is laid out the way Triton's python_backend examples are, as real files:
`<model>/config.pbtxt` plus `<model>/1/<payload>` (`model.py` copied from `triton_models/`,
the ONNX file, the tokenizer, the thresholds). Every config.pbtxt is a `ModelConfig` protobuf
message printed with `text_format`, never a hand-written string.

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
from types import ModuleType
from typing import Any

from tiergate.artifacts import (
    CLASSIFIER_MODEL,
    EXPORT_INFO,
    LABELS_FILE,
    POSTPROCESS_MODEL,
    PYTHON_MODEL,
    THRESHOLDS_FILE,
    TOKENIZER_DIR,
    TOKENIZER_FILE,
    TOKENIZER_MODEL,
    RepositoryLayout,
)
from tiergate.errors import PromotionRefused
from tiergate.exports import load_export_manifest
from tiergate.gate import GatePolicy, GateRecord, load_gate, require_trusted
from tiergate.hashing import folder_digests, read_json, sha256_file, sha256_json, write_json
from tiergate.inference import ThresholdSet
from tiergate.outputs import atomic_output
from tiergate.preprocessing import PREPROCESSING_VERSION, Windowing
from tiergate.profiles import ServingSettings
from tiergate.taxonomy import Taxonomy
from tiergate.trust import check_name, sign_manifest, verify_local_repository

MODELS_DIR = Path(__file__).resolve().parent / "triton_models"
PYTHON_SOURCES = {TOKENIZER_MODEL: "tokenizer.py", CLASSIFIER_MODEL: "classifier.py", POSTPROCESS_MODEL: "postprocess.py"}
ONNX_TYPES = {"input_ids": "TYPE_INT64", "attention_mask": "TYPE_INT64", "token_type_ids": "TYPE_INT64"}
ENSEMBLE_INPUTS = ("TEXT", "CONTEXT")
# The tokenizer turns a request of texts into rows (windows x readings): OWNER maps each row to its text,
# for the postprocess to pool; WINDOWS (rows per text) and TRUNCATED are per text and leave the ensemble.
ROW_OUTPUTS = {"OWNER": "TYPE_INT32", "WINDOWS": "TYPE_INT32", "TRUNCATED": "TYPE_BOOL"}
ENSEMBLE_VERSION_MARKER = ".keep"  # Triton needs the ensemble's version folder to exist; git keeps no empty folder


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
    windowing: Windowing

    @property
    def local(self) -> bool:
        return self.settings.variant == "local"

    @property
    def max_rows(self) -> int:
        """The most model rows one request may become (windows x readings of its texts): the classifier's and
        the postprocess's batch limit; the tokenizer refuses a request that needs more."""
        return self.settings.max_rows_per_request


def verify_gate(gate: GateRecord, export_dir: Path, evaluation_dir: Path, policy: GatePolicy | None = None) -> None:
    """Refuse unless the gate is trusted and passed, its chain is intact, and every judged file is what is packaged."""
    require_trusted(gate, "refusing to package", policy)
    judged = gate.judged
    export = load_export_manifest(export_dir)
    if export.digest() != judged.export_sha256:
        raise PromotionRefused(
            f"{export_dir} is not the export the gate judged (export {export.digest()[:12]}, judged "
            f"{judged.export_sha256[:12]}); refusing"
        )
    checks = {
        "model": (export_dir / judged.model_file, judged.model_sha256),
        "thresholds": (evaluation_dir / THRESHOLDS_FILE, judged.thresholds_sha256),
        "tokenizer": (export_dir / TOKENIZER_DIR / TOKENIZER_FILE, judged.tokenizer_sha256),
    }
    for what, (path, expected) in checks.items():
        if not path.is_file():
            raise PromotionRefused(f"{what} file {path} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise PromotionRefused(f"{what} {path.name} has sha256 {actual[:12]} but the gate judged {expected[:12]}; refusing")


# ---- model configs: ModelConfig messages ---------------------------------------------------------


def model_config_module() -> ModuleType:
    """`tritonclient.grpc.model_config_pb2`, imported only when a repository is built.

    `tritonclient.grpc` and the KServe SDK register the same protobuf package (`inference`) and
    cannot share a process, so no module that is imported alongside kserve may import it at load time.
    """
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def new_config(pb: ModuleType, spec: RepositorySpec, name: str, max_batch_size: int | None = None) -> Any:
    return pb.ModelConfig(name=name, max_batch_size=max_batch_size or spec.settings.max_batch_size)


def add_tensor(pb: ModuleType, tensors: Any, name: str, data_type: str, dims: int, label_filename: str = "") -> None:
    """Append one input or output: name, data type (e.g. `TYPE_FP32`), a single dimension, optional label file."""
    tensor = tensors.add(name=name, data_type=pb.DataType.Value(data_type), dims=[dims])
    if label_filename:  # outputs only: ModelInput has no label_filename
        tensor.label_filename = label_filename


def add_instance_group(pb: ModuleType, config: Any, spec: RepositorySpec, kind: str) -> None:
    config.instance_group.add(kind=pb.ModelInstanceGroup.Kind.Value(kind), count=spec.settings.instance_count)


def set_dynamic_batching(config: Any, spec: RepositorySpec, preferred: bool) -> None:
    batching = config.dynamic_batching
    batching.SetInParent()  # present even when every field keeps its default
    if preferred:
        batching.preferred_batch_size.extend(spec.settings.preferred_batch_sizes)
    batching.max_queue_delay_microseconds = spec.settings.max_queue_delay_us


def set_parameters(config: Any, values: dict[str, str]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = value


def add_ensemble_step(config: Any, model: str, inputs: list[str], outputs: list[str]) -> None:
    """One step of the ensemble; every tensor keeps its name between the ensemble and the step."""
    step = config.ensemble_scheduling.step.add(model_name=model, model_version=-1)
    for name in inputs:
        step.input_map[name] = name
    for name in outputs:
        step.output_map[name] = name


def add_token_tensors(pb: ModuleType, tensors: Any, spec: RepositorySpec) -> None:
    for name in spec.input_names:
        add_tensor(pb, tensors, name, ONNX_TYPES[name], spec.max_length)


def tokenizer_config(pb: ModuleType, spec: RepositorySpec) -> Any:
    config = new_config(pb, spec, TOKENIZER_MODEL)
    config.backend = "python"
    for name in ENSEMBLE_INPUTS:
        add_tensor(pb, config.input, name, "TYPE_STRING", 1)
    add_token_tensors(pb, config.output, spec)
    for name, data_type in ROW_OUTPUTS.items():
        add_tensor(pb, config.output, name, data_type, 1)
    add_instance_group(pb, config, spec, "KIND_CPU")
    set_dynamic_batching(config, spec, preferred=False)
    set_parameters(
        config,
        {
            "max_length": str(spec.max_length),
            "window_stride": str(spec.windowing.stride),
            "max_windows": str(spec.windowing.max_windows),
            "preprocessing_version": PREPROCESSING_VERSION,
            "input_names": json.dumps(spec.input_names),
            "max_text_chars": str(spec.settings.max_text_chars),
            "max_rows": str(spec.max_rows),
            "audiences": json.dumps(spec.audiences),
            "surfaces": json.dumps(spec.surfaces),
        },
    )
    return config


def classifier_config(pb: ModuleType, spec: RepositorySpec) -> Any:
    """production: Triton's onnxruntime backend loads 1/model.onnx on GPU; local: the python backend
    loads 1/model.py, which opens the same 1/model.onnx with onnxruntime on CPU."""
    config = new_config(pb, spec, CLASSIFIER_MODEL, spec.max_rows)
    if spec.local:
        config.backend = "python"
    else:
        config.platform = "onnxruntime_onnx"
    add_token_tensors(pb, config.input, spec)
    add_tensor(pb, config.output, "logits", "TYPE_FP32", len(spec.labels))
    add_instance_group(pb, config, spec, "KIND_CPU" if spec.local else "KIND_GPU")
    set_dynamic_batching(config, spec, preferred=True)
    return config


def postprocess_config(pb: ModuleType, spec: RepositorySpec) -> Any:
    labels = len(spec.labels)
    config = new_config(pb, spec, POSTPROCESS_MODEL, spec.max_rows)
    config.backend = "python"
    add_tensor(pb, config.input, "logits", "TYPE_FP32", labels)
    add_tensor(pb, config.input, "OWNER", "TYPE_INT32", 1)
    add_tensor(pb, config.output, "SCORES", "TYPE_FP32", labels, label_filename=LABELS_FILE)
    add_tensor(pb, config.output, "FLAGS", "TYPE_BOOL", labels)
    add_tensor(pb, config.output, "MAX_TIER", "TYPE_INT32", 1)
    add_instance_group(pb, config, spec, "KIND_CPU")
    set_dynamic_batching(config, spec, preferred=False)
    set_parameters(config, {"optional_disabled": json.dumps(spec.settings.optional_disabled)})
    return config


def ensemble_config(pb: ModuleType, spec: RepositorySpec) -> Any:
    labels = len(spec.labels)
    config = new_config(pb, spec, spec.name)
    config.platform = "ensemble"
    for name in ENSEMBLE_INPUTS:
        add_tensor(pb, config.input, name, "TYPE_STRING", 1)
    add_tensor(pb, config.output, "SCORES", "TYPE_FP32", labels)
    add_tensor(pb, config.output, "FLAGS", "TYPE_BOOL", labels)
    add_tensor(pb, config.output, "MAX_TIER", "TYPE_INT32", 1)
    add_tensor(pb, config.output, "TRUNCATED", "TYPE_BOOL", 1)
    add_tensor(pb, config.output, "WINDOWS", "TYPE_INT32", 1)
    add_ensemble_step(config, TOKENIZER_MODEL, list(ENSEMBLE_INPUTS), [*spec.input_names, *ROW_OUTPUTS])
    add_ensemble_step(config, CLASSIFIER_MODEL, spec.input_names, ["logits"])
    add_ensemble_step(config, POSTPROCESS_MODEL, ["logits", "OWNER"], ["SCORES", "FLAGS", "MAX_TIER"])
    set_parameters(
        config,
        {
            "labels": json.dumps(spec.labels),
            "model_version": spec.model_version,
            "taxonomy_sha256": spec.taxonomy_sha256,
            "gate_digest": spec.gate_digest,
            "contexts": json.dumps({"audiences": spec.audiences, "surfaces": spec.surfaces}),
        },
    )
    return config


def render_configs(spec: RepositorySpec) -> dict[str, str]:
    """config.pbtxt text of every model in the repository, by model name."""
    from google.protobuf import text_format

    pb = model_config_module()
    builders = (tokenizer_config, classifier_config, postprocess_config, ensemble_config)
    configs = [builder(pb, spec) for builder in builders]
    return {config.name: text_format.MessageToString(config, use_short_repeated_primitives=True) for config in configs}


# ---- the repository on disk ----------------------------------------------------------------------


def build_repository(
    taxonomy: Taxonomy,
    settings: ServingSettings,
    export_dir: Path,
    evaluation_dir: Path,
    out_dir: Path,
    model_version: str,
    policy: GatePolicy | None = None,
) -> dict[str, Any]:
    """The packaging step: refuse unless the gate is trusted and passed on exactly these files, then write
    the repository and verify what was written with the same check serving uses."""
    gate = load_gate(Path(evaluation_dir))
    verify_gate(gate, Path(export_dir), Path(evaluation_dir), policy)
    return write_repository(taxonomy, settings, export_dir, evaluation_dir, out_dir, model_version, gate, verify=True)


def repository_spec(
    taxonomy: Taxonomy, settings: ServingSettings, export_dir: Path, evaluation_dir: Path, model_version: str, gate: GateRecord
) -> RepositorySpec:
    """Read the export's description and the thresholds; refuse to disable a category that is not optional."""
    thresholds = ThresholdSet.load(evaluation_dir / THRESHOLDS_FILE, taxonomy.labels)
    model_json = read_json(export_dir / EXPORT_INFO)
    if model_json.get("preprocessing_version") != PREPROCESSING_VERSION:
        raise PromotionRefused(
            f"{export_dir} was exported with preprocessing version {model_json.get('preprocessing_version', '1')}; this "
            f"tiergate reads texts with version {PREPROCESSING_VERSION} (normalisation, windows): re-export and re-evaluate"
        )
    unknown = set(settings.optional_disabled) - set(thresholds.optional)
    if unknown:
        raise PromotionRefused(f"serving.optional_disabled names non-optional categories {sorted(unknown)}")
    return RepositorySpec(
        name=settings.model_name,
        labels=taxonomy.labels,
        input_names=model_json["input_names"],
        max_length=int(model_json["max_length"]),
        settings=settings,
        audiences=list(taxonomy.contexts.audiences),
        surfaces=list(taxonomy.contexts.surfaces),
        model_version=model_version,
        taxonomy_sha256=taxonomy.labels_sha256,
        gate_digest=gate.digest(),
        windowing=Windowing(int(model_json["window_stride"]), int(model_json["max_windows"])),
    )


def python_models(spec: RepositorySpec) -> list[str]:
    """The models served by the python backend (the classifier only in the local variant)."""
    return [TOKENIZER_MODEL, *([CLASSIFIER_MODEL] if spec.local else []), POSTPROCESS_MODEL]


def write_models(layout: RepositoryLayout, spec: RepositorySpec) -> None:
    """Each model's folder: `<model>/config.pbtxt`, `<model>/1/`, and `1/model.py` for python-backend models."""
    for model, config in render_configs(spec).items():
        layout.version_dir(model).mkdir(parents=True)
        layout.config(model).write_text(config, encoding="utf-8")
    for model in python_models(spec):
        shutil.copyfile(MODELS_DIR / PYTHON_SOURCES[model], layout.version_dir(model) / PYTHON_MODEL)
    (layout.version_dir(spec.name) / ENSEMBLE_VERSION_MARKER).write_text("", encoding="utf-8")


def copy_payloads(
    layout: RepositoryLayout, spec: RepositorySpec, export_dir: Path, evaluation_dir: Path, gate: GateRecord
) -> None:
    """The judged files themselves: tokenizer, ONNX model, thresholds; plus the label file of the scores."""
    shutil.copytree(export_dir / TOKENIZER_DIR, layout.tokenizer_dir)
    shutil.copyfile(export_dir / gate.judged.model_file, layout.classifier_onnx)
    shutil.copyfile(evaluation_dir / THRESHOLDS_FILE, layout.thresholds)
    layout.labels.write_text("\n".join(spec.labels) + "\n", encoding="utf-8")
    write_json(layout.gate, gate.as_json())


def write_manifest(layout: RepositoryLayout, spec: RepositorySpec, gate: GateRecord) -> dict[str, Any]:
    """Digest every file in the repository and write `repository.json`."""
    root = layout.root
    files = folder_digests(root)
    manifest = {
        "model_name": spec.name,
        "model_version": spec.model_version,
        "variant": spec.settings.variant,
        "labels": spec.labels,
        "taxonomy_sha256": spec.taxonomy_sha256,
        "gate_digest": spec.gate_digest,
        "gate_summary": gate.summary.model_dump(mode="json"),
        "files": files,
        "digest": sha256_json(files),
    }
    manifest = sign_manifest(manifest)  # with TIERGATE_GATE_KEY set, every served file is bound, not only the judged ones
    write_json(layout.manifest, manifest)
    return manifest


def write_repository(
    taxonomy: Taxonomy,
    settings: ServingSettings,
    export_dir: Path,
    evaluation_dir: Path,
    out_dir: Path,
    model_version: str,
    gate: GateRecord,
    verify: bool = False,
) -> dict[str, Any]:
    """Write the repository to `out_dir` atomically and return its manifest (content digest included).

    No gate check unless `verify` (tests build repositories of untrained models with it off); with
    it, the finished folder must pass `verify_local_repository` before it replaces `out_dir`.
    """
    export_dir, evaluation_dir = Path(export_dir), Path(evaluation_dir)
    spec = repository_spec(taxonomy, settings, export_dir, evaluation_dir, model_version, gate)
    check_name("model name", spec.name)
    check_name("model version", model_version)
    with atomic_output(Path(out_dir), overwrite=True, inputs=[export_dir, evaluation_dir]) as staging:
        layout = RepositoryLayout(staging)
        write_models(layout, spec)
        copy_payloads(layout, spec, export_dir, evaluation_dir, gate)
        manifest = write_manifest(layout, spec, gate)
        if verify:
            verify_local_repository(staging)
    return manifest
