from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import tiny_profile
from tiergate.components.export.step import export_model
from tiergate.errors import LabelMismatchError, ParityError
from tiergate.onnx_model import check_onnx_labels, open_session, read_metadata, run_logits
from tiergate.taxonomy import Taxonomy, parse_taxonomy


def test_export_writes_both_variants_with_metadata(taxonomy: Taxonomy, tiny_export: Path) -> None:
    for name in ("model.onnx", "model_fp16.onnx"):
        metadata = check_onnx_labels(tiny_export / name, taxonomy)
        assert json.loads(metadata["labels"]) == taxonomy.labels
        assert metadata["taxonomy_sha256"] == taxonomy.labels_sha256
    assert read_metadata(tiny_export / "model_fp16.onnx")["variant"] == "fp16"
    sidecar = json.loads((tiny_export / "model.json").read_text())
    assert sidecar["served_variant"] == "fp16" and sidecar["parity"] == {"fp32": True, "fp16": True}
    report = json.loads((tiny_export / "export_report.json").read_text())
    assert report["variants"]["fp32"]["parity"]["max_abs_diff"] < 1e-4
    assert report["variants"]["fp16"]["parity"]["decision_agreement"] >= 0.995
    assert [row["batch_size"] for row in report["latency"]] == [1, 8, 32]
    assert {"pytorch_ms", "onnx_fp32_ms", "onnx_fp16_ms"} <= set(report["latency"][0])
    assert (tiny_export / "tokenizer" / "tokenizer.json").is_file()


def test_dynamic_batch_and_sequence_axes(tiny_export: Path) -> None:
    sess = open_session(tiny_export / "model_fp16.onnx")
    names = [node.name for node in sess.get_inputs()]
    for batch, length in ((1, 5), (7, 23)):
        inputs = {name: np.ones((batch, length), dtype=np.int64) for name in names}
        assert run_logits(sess, inputs).shape == (batch, 33)
    assert sess.get_outputs()[0].type == "tensor(float)"  # fp32 I/O around fp16 weights


def test_onnx_from_another_taxonomy_is_refused(taxonomy_dict: dict, tiny_export: Path) -> None:
    taxonomy_dict["categories"][0], taxonomy_dict["categories"][1] = (
        taxonomy_dict["categories"][1],
        taxonomy_dict["categories"][0],
    )
    with pytest.raises(LabelMismatchError, match="label ORDER differs"):
        check_onnx_labels(tiny_export / "model.onnx", parse_taxonomy(taxonomy_dict))


def test_failed_parity_fails_the_step_with_worst_examples(
    taxonomy: Taxonomy, tiny_checkpoints: Path, merged_small: Path, tiny_base: Path, tmp_path: Path
) -> None:
    strict = tiny_profile(tiny_base, export={"parity": {"max_abs_logit_diff_fp16": 1e-12}, "latency": {"batch_sizes": [1]}})
    with pytest.raises(ParityError, match=r"parity onnx-fp16 vs onnx-fp32 failed: max \|logit diff\| .* worst: "):
        export_model(taxonomy, strict, tiny_checkpoints / "phase3", merged_small, tmp_path)
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["variants"]["fp16"]["parity"]["passed"] is False
    assert len(report["variants"]["fp16"]["parity"]["worst"]) == 5


def test_int8_only_kept_when_parity_passes(
    taxonomy: Taxonomy, tiny_checkpoints: Path, merged_small: Path, tiny_base: Path, tmp_path: Path
) -> None:
    profile = tiny_profile(tiny_base, export={"int8": {"enabled": True}, "latency": {"batch_sizes": [1]}})
    report = export_model(taxonomy, profile, tiny_checkpoints / "phase3", merged_small, tmp_path / "ok")
    assert "destroys all-mpnet-base-v2" in report["int8_note"]
    assert report["variants"]["int8"]["parity"]["passed"] == (tmp_path / "ok" / "model_int8.onnx").exists()
    assert report["served_variant"] == "fp16"
    assert report["variants"]["int8"]["parity"]["max_abs_limit"] == profile.export.parity.max_abs_logit_diff_int8
    failing = tiny_profile(
        tiny_base,
        export={
            "int8": {"enabled": True},
            "latency": {"batch_sizes": [1]},
            "parity": {"max_abs_logit_diff_fp16": 1e-9, "max_abs_logit_diff_int8": 1e-9},
        },
    )
    with pytest.raises(ParityError):
        export_model(taxonomy, failing, tiny_checkpoints / "phase3", merged_small, tmp_path / "bad")
    assert not (tmp_path / "bad" / "model_int8.onnx").exists()
    assert "FAILED parity and was deleted" in json.loads((tmp_path / "bad" / "export_report.json").read_text())["int8_note"]
