"""The train step: one curriculum phase, warm-started from the previous phase's checkpoint.

Everything numeric comes from the profile (lr, batch, schedule, epochs, smoothing) and
the taxonomy (pos_weight caps). Deterministic on CPU: same data, same weights.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from tiergate.components.train.checkpoint import CheckpointInfo, load_checkpoint_info, write_checkpoint_info
from tiergate.components.train.data import EncodedDataset
from tiergate.components.train.trainer import EpochLogger, WeightedBCETrainer, metrics_function
from tiergate.components.train.weights import compute_pos_weight

from tiergate.base_models import resolve_base_model
from tiergate.datasets import load_manifest
from tiergate.errors import ConfigError, InputDataError
from tiergate.hashing import write_json
from tiergate.profiles import Profile, TrainSettings
from tiergate.records import read_jsonl
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)


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


def train_phase(
    taxonomy: Taxonomy,
    profile: Profile,
    data_dir: Path,
    phase: str,
    out_dir: Path,
    init_from: Path | None = None,
) -> CheckpointInfo:
    """Train `phase` on `data_dir/<phase>.jsonl`, select on val macro F1, write the checkpoint to `out_dir`."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    settings = profile.train
    if phase not in settings.phases:
        raise ConfigError(f"unknown phase {phase!r}; the profile defines {', '.join(settings.phases)}")
    manifest = load_manifest(Path(data_dir), taxonomy)
    parent = None
    if init_from is not None:
        parent = load_checkpoint_info(Path(init_from), taxonomy)  # refuses a label-order mismatch
        source, base_model = str(init_from), parent.base_model
    else:
        base_model = settings.base_model
        source = resolve_base_model(base_model)
    train_records = read_jsonl(Path(data_dir) / f"{phase}.jsonl")
    val_records = read_jsonl(Path(data_dir) / "val.jsonl")
    if not train_records or not val_records:
        raise InputDataError(
            f"{data_dir}: {phase} has {len(train_records)} records and val {len(val_records)}; both must be non-empty"
        )

    set_seed(profile.seed, deterministic=settings.deterministic)
    tokenizer, model = _load_model(source, taxonomy)
    pos_weight = compute_pos_weight(train_records, taxonomy)
    out_dir = Path(out_dir)
    work_dir = out_dir / "_trainer"
    precision = precision_flags(settings)
    args = TrainingArguments(
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
        disable_tqdm=not sys.stderr.isatty(),
        fp16=precision["fp16"],
        bf16=precision["bf16"],
    )
    trainer = WeightedBCETrainer(
        model=model,
        args=args,
        train_dataset=EncodedDataset(train_records, tokenizer, taxonomy.labels, settings.max_length),
        eval_dataset=EncodedDataset(val_records, tokenizer, taxonomy.labels, settings.max_length),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_function(taxonomy.labels, settings.eval_threshold),
        callbacks=[EarlyStoppingCallback(settings.early_stopping_patience), EpochLogger(phase)],
        pos_weight=torch.tensor([pos_weight[name] for name in taxonomy.labels], dtype=torch.float32),
        label_smoothing=settings.label_smoothing,
    )
    log.info(
        "%s: %d train / %d val records from %s, %d epochs",
        phase,
        len(train_records),
        len(val_records),
        source,
        settings.phases[phase].epochs,
    )
    trainer.remove_callback(PrinterCallback)  # EpochLogger prints one readable line per epoch instead
    trainer.train()
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    shutil.rmtree(work_dir, ignore_errors=True)

    epochs = [_without_timing(entry) for entry in trainer.state.log_history if "eval_macro_f1" in entry]
    best = max(epochs, key=lambda entry: entry["eval_macro_f1"]) if epochs else {}
    info = CheckpointInfo(
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.sha256,
        base_model=base_model,
        max_length=settings.max_length,
        phase=phase,
        parent=None if parent is None else f"{parent.phase}@{init_from}",
        dataset_sha256={"merged": manifest.dataset_sha256, phase: manifest.files[f"{phase}.jsonl"].sha256},
        pos_weight=pos_weight,
        epochs=[{key: value for key, value in entry.items() if not key.startswith("eval_f1_")} for entry in epochs],
        best=best,
        config={"train": settings.model_dump(mode="json"), "seed": profile.seed, "profile": profile.name},
        device="cuda" if torch.cuda.is_available() else "cpu",
    )
    write_checkpoint_info(out_dir, info)
    write_json(out_dir / "metrics.json", {"phase": phase, "best": info.best, "epochs": info.epochs})
    log.info("%s: best val macro F1 %.4f at epoch %s", phase, best.get("eval_macro_f1", float("nan")), best.get("epoch"))
    return info


def train_all(
    taxonomy: Taxonomy, profile: Profile, data_dir: Path, out_dir: Path, init_from: Path | None = None
) -> list[CheckpointInfo]:
    """All phases in profile order, each warm-starting from the previous: `out_dir/<phase>/`."""
    infos = []
    previous = init_from
    for phase in profile.train.phases:
        infos.append(train_phase(taxonomy, profile, data_dir, phase, Path(out_dir) / phase, init_from=previous))
        previous = Path(out_dir) / phase
    return infos
