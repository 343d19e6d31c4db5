"""The train step: one curriculum phase, warm-started from the previous phase's checkpoint.

Everything numeric comes from the profile (lr, batch, schedule, epochs, smoothing) and
the taxonomy (pos_weight caps). Deterministic on CPU: same data, same weights.
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tiergate.artifacts import TRAIN_METRICS, VAL_SPLIT, phase_file
from tiergate.base_models import resolve_base_model
from tiergate.components.train.checkpoint import CheckpointInfo, load_checkpoint_info, write_checkpoint_info
from tiergate.components.train.data import EncodedDataset
from tiergate.components.train.trainer import EpochLogger, WeightedBCETrainer, metrics_function
from tiergate.components.train.weights import compute_pos_weight
from tiergate.datasets import DatasetManifest, load_manifest
from tiergate.errors import ConfigError, InputDataError
from tiergate.hashing import write_json
from tiergate.outputs import atomic_output
from tiergate.preprocessing import InputEncoder, Padding
from tiergate.profiles import Profile, TrainSettings
from tiergate.records import Record, read_jsonl
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)
TRAINING_PADDING: Padding = "longest"  # each batch padded to its longest text: short texts train fast
TRAINER_WORK_DIR = "_trainer"  # the Trainer's per-epoch scratch checkpoints, deleted after training


def precision_flags(settings: TrainSettings) -> dict[str, bool]:
    """Mixed precision only on a GPU; `auto` picks bf16 where the card supports it."""
    if not torch.cuda.is_available() or settings.mixed_precision == "none":
        return {"fp16": False, "bf16": False}
    mode = settings.mixed_precision
    if mode == "auto":
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"fp16": mode == "fp16", "bf16": mode == "bf16"}


def _load_model(source: str, taxonomy: Taxonomy) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = taxonomy.labels
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source,
        num_labels=len(labels),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(labels)),
        label2id={name: index for index, name in enumerate(labels)},
    )
    configured = [model.config.id2label[index] for index in range(model.config.num_labels)]
    if configured != labels:
        raise InputDataError(f"{source}: model config labels differ from the taxonomy")
    return tokenizer, model


def _without_timing(entry: dict[str, Any]) -> dict[str, Any]:
    """Metrics minus wall-clock figures, so two identical runs write identical metadata."""
    return {key: value for key, value in entry.items() if not key.endswith(("_runtime", "_per_second"))}


@dataclass(frozen=True)
class StartingPoint:
    """Where a phase's weights and tokenizer come from: the previous phase, or the base model."""

    source: str
    base_model: str
    parent: CheckpointInfo | None = None
    parent_dir: Path | None = None

    @property
    def provenance(self) -> str | None:
        return None if self.parent is None else f"{self.parent.phase}@{self.parent_dir}"


def train_phase(
    taxonomy: Taxonomy,
    profile: Profile,
    data_dir: Path,
    phase: str,
    out_dir: Path,
    init_from: Path | None = None,
    overwrite: bool = False,
) -> CheckpointInfo:
    """Train `phase` on `data_dir/<phase>.jsonl`, select on val macro F1, write the checkpoint to `out_dir` (whole).

    Everything that can refuse the inputs (unknown phase, manifest, warm-start labels, empty data)
    runs before any weight is loaded, so a refused phase writes nothing.
    """
    from transformers import set_seed

    settings = profile.train
    check_phase(phase, settings)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    manifest = load_manifest(data_dir, taxonomy)
    start = starting_point(settings, taxonomy, init_from)
    train_records, val_records = read_phase_data(data_dir, phase)

    set_seed(profile.seed, deterministic=settings.deterministic)  # before the classifier head is initialised
    tokenizer, model = _load_model(start.source, taxonomy)
    pos_weight = compute_pos_weight(train_records, taxonomy)
    encoder = InputEncoder(tokenizer, settings.max_length, TRAINING_PADDING)
    epochs = settings.phases[phase].epochs
    log.info(
        "%s: %d train / %d val records from %s, %d epochs", phase, len(train_records), len(val_records), start.source, epochs
    )
    with atomic_output(out_dir, overwrite, inputs=[data_dir, init_from]) as staging:
        work_dir = staging / TRAINER_WORK_DIR
        trainer = build_trainer(model, encoder, taxonomy, profile, phase, (train_records, val_records), pos_weight, work_dir)
        fit_and_save(trainer, tokenizer, staging, work_dir)
        info = describe_checkpoint(trainer, taxonomy, profile, phase, start, manifest, pos_weight)
        write_outputs(staging, info)
    return info


def check_phase(phase: str, settings: TrainSettings) -> None:
    if phase not in settings.phases:
        raise ConfigError(f"unknown phase {phase!r}; the profile defines {', '.join(settings.phases)}")


def starting_point(settings: TrainSettings, taxonomy: Taxonomy, init_from: Path | None) -> StartingPoint:
    """Warm start from `init_from` (refused on a label-order mismatch), else the profile's base model."""
    if init_from is None:
        return StartingPoint(resolve_base_model(settings.base_model), settings.base_model)
    parent = load_checkpoint_info(Path(init_from), taxonomy)
    return StartingPoint(str(init_from), parent.base_model, parent, init_from)


def read_phase_data(data_dir: Path, phase: str) -> tuple[list[Record], list[Record]]:
    """The phase's curriculum subset and the validation split; both must be non-empty."""
    train_records = read_jsonl(data_dir / phase_file(phase))
    val_records = read_jsonl(data_dir / VAL_SPLIT)
    if not train_records or not val_records:
        raise InputDataError(
            f"{data_dir}: {phase} has {len(train_records)} records and val {len(val_records)}; both must be non-empty"
        )
    return train_records, val_records


def training_arguments(profile: Profile, phase: str, work_dir: Path) -> Any:
    """Hugging Face TrainingArguments from the profile: evaluate and keep the best model every epoch."""
    from transformers import TrainingArguments

    settings = profile.train
    precision = precision_flags(settings)
    return TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=settings.phases[phase].epochs,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.scheduler,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        logging_strategy="epoch",
        report_to=[],
        seed=profile.seed,
        data_seed=profile.seed,
        full_determinism=settings.deterministic,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=settings.dataloader_workers,
        # Batches are padded to their longest text: grouping similar lengths wastes little compute.
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        disable_tqdm=not sys.stderr.isatty(),
        fp16=precision["fp16"],
        bf16=precision["bf16"],
    )


def build_trainer(
    model: Any,
    encoder: InputEncoder,
    taxonomy: Taxonomy,
    profile: Profile,
    phase: str,
    records: tuple[list[Record], list[Record]],
    pos_weight: dict[str, float],
    work_dir: Path,
) -> WeightedBCETrainer:
    """The weighted-BCE trainer over (train, val) records, encoded and padded by `encoder`."""
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback

    settings = profile.train
    train_records, val_records = records
    args = training_arguments(profile, phase, work_dir)
    trainer = WeightedBCETrainer(
        model=model,
        args=args,
        train_dataset=EncodedDataset(train_records, encoder, taxonomy.labels),
        eval_dataset=EncodedDataset(val_records, encoder, taxonomy.labels),
        processing_class=encoder.tokenizer,
        data_collator=encoder.collator(),
        compute_metrics=metrics_function(taxonomy.labels, settings.eval_threshold),
        callbacks=[EarlyStoppingCallback(settings.early_stopping_patience), EpochLogger(phase, settings.batch_size)],
        pos_weight=torch.tensor([pos_weight[name] for name in taxonomy.labels], dtype=torch.float32),
        label_smoothing=settings.label_smoothing,
        head_learning_rate=settings.head_learning_rate,
    )
    trainer.remove_callback(PrinterCallback)  # EpochLogger prints one readable line per epoch instead
    return trainer


def fit_and_save(trainer: WeightedBCETrainer, tokenizer: Any, out_dir: Path, work_dir: Path) -> None:
    """Train, keep the best epoch's weights plus the tokenizer in `out_dir`, drop the trainer's scratch."""
    trainer.train()
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    shutil.rmtree(work_dir, ignore_errors=True)


def describe_checkpoint(
    trainer: WeightedBCETrainer,
    taxonomy: Taxonomy,
    profile: Profile,
    phase: str,
    start: StartingPoint,
    manifest: DatasetManifest,
    pos_weight: dict[str, float],
) -> CheckpointInfo:
    """What the checkpoint is: labels, provenance (parent, data hashes), per-epoch metrics, config."""
    settings = profile.train
    epochs = [_without_timing(entry) for entry in trainer.state.log_history if "eval_macro_f1" in entry]
    best = max(epochs, key=lambda entry: entry["eval_macro_f1"]) if epochs else {}
    return CheckpointInfo(
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.labels_sha256,
        base_model=start.base_model,
        max_length=settings.max_length,
        phase=phase,
        parent=start.provenance,
        dataset_sha256={"merged": manifest.dataset_sha256, phase: manifest.files[phase_file(phase)].sha256},
        pos_weight=pos_weight,
        epochs=[{key: value for key, value in entry.items() if not key.startswith("eval_f1_")} for entry in epochs],
        best=best,
        config={"train": settings.model_dump(mode="json"), "seed": profile.seed, "profile": profile.name},
        device="cuda" if torch.cuda.is_available() else "cpu",
    )


def write_outputs(out_dir: Path, info: CheckpointInfo) -> None:
    """The checkpoint metadata beside the weights, and the phase's metrics for the pipeline UI."""
    write_checkpoint_info(out_dir, info)
    write_json(out_dir / TRAIN_METRICS, {"phase": info.phase, "best": info.best, "epochs": info.epochs})
    best = info.best
    log.info("%s: best val macro F1 %.4f at epoch %s", info.phase, best.get("eval_macro_f1", float("nan")), best.get("epoch"))


def train_all(
    taxonomy: Taxonomy,
    profile: Profile,
    data_dir: Path,
    out_dir: Path,
    init_from: Path | None = None,
    overwrite: bool = False,
) -> list[CheckpointInfo]:
    """All phases in profile order, each warm-starting from the previous: `out_dir/<phase>/`."""
    infos = []
    previous = init_from
    for phase in profile.train.phases:
        infos.append(train_phase(taxonomy, profile, data_dir, phase, Path(out_dir) / phase, previous, overwrite))
        previous = Path(out_dir) / phase
    return infos
