"""Writing ONNX files as tiergate artifacts: export, fp16 conversion, embedded metadata (read by tiergate.onnx_model)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch

from tiergate.onnx_model import META_PREFIX


class LogitsOnly(torch.nn.Module):
    """The classifier with one output, `logits`, and explicit inputs (what ONNX and Triton see)."""

    def __init__(self, model: torch.nn.Module, input_names: Sequence[str]):
        super().__init__()
        self.model = model
        self.input_names = list(input_names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs, strict=True))).logits


def export_fp32(model: torch.nn.Module, input_names: Sequence[str], path: Path, opset: int) -> None:
    # eval() on the wrapper itself: export restores the wrapper's mode afterwards, and a new
    # Module is in training mode, which would silently re-enable dropout in `model`.
    wrapper = LogitsOnly(model, input_names).eval()
    # The dummy batch must contain padding: traced with an all-ones mask, the attention-mask
    # path can be folded away and the exported graph would attend to padding tokens.
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3], dtype=torch.long)
    dummy = tuple(mask if name == "attention_mask" else torch.ones((2, 8), dtype=torch.long) for name in input_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes["logits"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            dummy,
            str(path),
            input_names=list(input_names),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def convert_fp16(source: Path, target: Path) -> None:
    """fp16 weights, fp32 inputs/outputs (fp16 is near-lossless at half the size: docs/lessons.md#fp16-served)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


def write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        entry = model.metadata_props.add()
        entry.key = META_PREFIX + key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    onnx.save(model, str(path))
