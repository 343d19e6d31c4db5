"""A Hugging Face Trainer with weighted, label-smoothed BCE masked to known labels, and the metrics it selects on."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from transformers import Trainer, TrainerCallback

from tiergate.numeric import sigmoid

log = logging.getLogger(__name__)


def smoothed_targets(labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Binary label smoothing: 1 -> 1 - s/2, 0 -> s/2."""
    return labels * (1.0 - smoothing) + 0.5 * smoothing


class WeightedBCETrainer(Trainer):
    """BCEWithLogits with per-label pos_weight (tier-capped upstream) and label smoothing."""

    def __init__(
        self,
        *args: Any,
        pos_weight: torch.Tensor,
        label_smoothing: float,
        head_learning_rate: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.pos_weight = pos_weight
        self.label_smoothing = label_smoothing
        self.head_learning_rate = head_learning_rate

    def create_optimizer(self, model: Any = None) -> Any:
        """The Trainer's optimizer, with the new classification head on its own learning rate when one is
        set: a step the pre-trained encoder survives on real text (measured: 3e-4 collapsed it to one
        output for every input, run public-3) leaves a freshly initialised head near its starting bias."""
        if self.optimizer is not None or self.head_learning_rate is None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(model))
        encoder_prefix = f"{model.base_model_prefix}."
        groups = []
        for in_head, learning_rate in ((False, self.args.learning_rate), (True, self.head_learning_rate)):
            for decayed, weight_decay in ((True, self.args.weight_decay), (False, 0.0)):
                params = [
                    parameter
                    for name, parameter in model.named_parameters()
                    if parameter.requires_grad and (not name.startswith(encoder_prefix)) == in_head and (name in decay) == decayed
                ]
                if params:
                    groups.append({"params": params, "weight_decay": weight_decay, "lr": learning_rate})
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = masked_bce(outputs.logits, labels, self.pos_weight, self.label_smoothing)
        return (loss, outputs) if return_outputs else loss


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Weighted, smoothed BCE in which an unknown cell (target below 0, UNKNOWN_TARGET: a category the
    record's source never labelled) contributes nothing, either way.

    The sum is divided by ALL cells (rows x labels), not by the known ones: every known cell then weighs
    the same in every batch. Dividing by the known count made a cell of a public row (1-4 known of 33)
    weigh 10-30x a cell of a fully labelled generated row; those batches dominated Adam's step scale and
    the generator-only categories collapsed (run public-2: macro F1 0.27 on the generated rows that the
    local profile learns to 0.99). On fully labelled data the two are identical."""
    labels = labels.to(logits.dtype)
    known = (labels >= 0).to(logits.dtype)
    targets = smoothed_targets(labels.clamp(min=0.0), smoothing)
    cells = F.binary_cross_entropy_with_logits(
        logits, targets, pos_weight=pos_weight.to(logits.device, logits.dtype), reduction="none"
    )
    return (cells * known).sum() / max(cells.numel(), 1)


def macro_f1(
    scores: np.ndarray, targets: np.ndarray, threshold: float, known: np.ndarray | None = None
) -> tuple[float, dict[int, float]]:
    """Macro F1 over the labels that have positives in `targets` (absent labels are not scored), each
    over the rows where that label is known."""
    predictions = scores >= threshold
    known = np.ones_like(targets, dtype=bool) if known is None else known
    per_label = {}
    for column in range(targets.shape[1]):
        rows = known[:, column]
        if targets[rows, column].sum() > 0:
            per_label[column] = float(f1_score(targets[rows, column], predictions[rows, column], zero_division=0))
    return (float(np.mean(list(per_label.values()))) if per_label else 0.0), per_label


def metrics_function(labels: Sequence[str], threshold: float) -> Any:
    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        label_ids = np.asarray(prediction.label_ids)
        targets = (label_ids >= 0.5).astype(int)
        value, per_label = macro_f1(sigmoid(np.asarray(logits)), targets, threshold, known=label_ids >= 0)
        result = {"macro_f1": value}
        result.update({f"f1_{labels[column]}": score for column, score in per_label.items()})
        return result

    return compute


class EpochLogger(TrainerCallback):
    """One readable line per epoch, and a progress line every tenth of the steps with the rate and
    the time left (one pass over real data can take many minutes), in the terminal and in KFP pod logs."""

    def __init__(self, phase: str, batch_size: int = 1, reports: int = 10):
        self.phase = phase
        self.batch_size = batch_size
        self.reports = reports
        self.started: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        total, done = state.max_steps or 0, state.global_step
        if self.started is None or total <= 0 or done % max(1, total // self.reports) or done == total:
            return
        elapsed = time.monotonic() - self.started
        rate = done * self.batch_size / elapsed if elapsed > 0 else 0.0
        left = (total - done) * elapsed / done
        share = 100 * done / total
        log.info("%s: step %d/%d (%.0f%%), %.1f texts/s, about %.0f min left", self.phase, done, total, share, rate, left / 60)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if metrics:
            log.info(
                "%s epoch %.0f/%d: val macro F1 %.4f, val loss %.4f",
                self.phase,
                state.epoch or 0,
                args.num_train_epochs,
                metrics.get("eval_macro_f1", float("nan")),
                metrics.get("eval_loss", float("nan")),
            )
