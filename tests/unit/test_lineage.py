"""Lineage: each step reads its inputs only through their manifests and refuses what does not match.

Tried on the tiny model: an export that did not finish or failed parity, data merged with
another split salt, a checkpoint whose weights carry another label map, and a gate whose
export is not the one beside it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import SMALL_CATEGORIES, tiny_profile
from tests.trust_helpers import lenient
from tiergate.components.evaluate.step import evaluate_model
from tiergate.components.export.step import export_model
from tiergate.components.merge.step import merge_datasets
from tiergate.components.package.repository import verify_gate
from tiergate.errors import InputDataError, LabelMismatchError, ParityError, PromotionRefused
from tiergate.exports import load_export_manifest
from tiergate.hashing import read_json, write_json
from tiergate.profiles import load_profile
from tiergate.taxonomy import Taxonomy


@pytest.fixture(scope="module")
def merged_other_salt(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy, merged_small: Path) -> Path:
    """The same generated records, merged with another split salt: other train/val/test membership."""
    generated = merged_small.parent / "generated"
    profile = load_profile("local", {"merge": {"splits": {"salt": "another-salt"}}})
    out = tmp_path_factory.mktemp("other-salt") / "merged"
    merge_datasets(taxonomy, profile, [generated / name for name in SMALL_CATEGORIES], out)
    return out


def test_the_export_manifest_records_the_chain(tiny_export: Path, tiny_checkpoints: Path, merged_small: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    assert manifest.parity_passed and manifest.parity["fp16"]
    assert (
        manifest.dataset_sha256 == read_json(tiny_checkpoints / "phase3" / "tiergate_checkpoint.json")["dataset_sha256"]["merged"]
    )
    assert {"model.onnx", "model_fp16.onnx", "model.json", "tokenizer/tokenizer.json"} <= set(manifest.files)


def test_evaluation_refuses_an_unfinished_or_changed_export(
    taxonomy: Taxonomy, tiny_export: Path, merged_small: Path, tiny_base: Path, tmp_path: Path
) -> None:
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_export, unfinished)
    (unfinished / "export_manifest.json").unlink()  # killed before its last write
    with pytest.raises(InputDataError, match="did not finish"):
        evaluate_model(taxonomy, tiny_profile(tiny_base), unfinished, merged_small, tmp_path / "e1")
    changed = tmp_path / "changed"
    shutil.copytree(tiny_export, changed)
    model = changed / "model_fp16.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(InputDataError, match=r"model_fp16\.onnx has sha256 .* refusing a changed export"):
        evaluate_model(taxonomy, tiny_profile(tiny_base), changed, merged_small, tmp_path / "e2")
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()


def test_an_export_that_failed_parity_is_recorded_and_cannot_be_evaluated(
    taxonomy: Taxonomy, tiny_checkpoints: Path, merged_small: Path, tiny_base: Path, tmp_path: Path
) -> None:
    strict = tiny_profile(tiny_base, export={"parity": {"max_abs_logit_diff_fp16": 1e-12}, "latency": {"batch_sizes": [1]}})
    with pytest.raises(ParityError):
        export_model(taxonomy, strict, tiny_checkpoints / "phase3", merged_small, tmp_path / "export")
    assert not load_export_manifest(tmp_path / "export").parity_passed  # the failure explains itself, on disk
    with pytest.raises(InputDataError, match=r"failed its parity gate \(fp16\)"):
        evaluate_model(taxonomy, tiny_profile(tiny_base), tmp_path / "export", merged_small, tmp_path / "evaluation")


def test_data_merged_with_another_salt_is_refused_by_export_and_evaluation(
    taxonomy: Taxonomy, tiny_checkpoints: Path, tiny_export: Path, merged_other_salt: Path, tiny_base: Path, tmp_path: Path
) -> None:
    profile = tiny_profile(tiny_base, export={"latency": {"batch_sizes": [1]}})
    with pytest.raises(InputDataError, match=r"checkpoint was trained on dataset .* split salt"):
        export_model(taxonomy, profile, tiny_checkpoints / "phase3", merged_other_salt, tmp_path / "export")
    with pytest.raises(
        InputDataError, match=r"exported model was trained on dataset .* its test records may be in the training set"
    ):
        evaluate_model(taxonomy, profile, tiny_export, merged_other_salt, tmp_path / "evaluation")
    assert not (tmp_path / "export").exists() and not (tmp_path / "evaluation").exists()


def test_a_half_written_merge_is_refused_by_export(
    taxonomy: Taxonomy, tiny_checkpoints: Path, merged_small: Path, tiny_base: Path, tmp_path: Path
) -> None:
    half = tmp_path / "merged"
    shutil.copytree(merged_small, half)
    val = half / "val.jsonl"
    val.write_text(val.read_text().splitlines()[0] + "\n")
    with pytest.raises(InputDataError, match=r"val\.jsonl: sha256 .* does not match manifest"):
        export_model(taxonomy, tiny_profile(tiny_base), tiny_checkpoints / "phase3", half, tmp_path / "export")


def test_a_checkpoint_whose_weights_carry_another_label_map_is_refused(
    taxonomy: Taxonomy, tiny_checkpoints: Path, merged_small: Path, tiny_base: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_checkpoints / "phase3", checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    first, second = config["id2label"]["0"], config["id2label"]["1"]
    config["id2label"]["0"], config["id2label"]["1"] = second, first
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(LabelMismatchError, match="id2label is not the taxonomy's labels in order"):
        export_model(taxonomy, tiny_profile(tiny_base), checkpoint, merged_small, tmp_path / "export")


def test_packaging_refuses_a_gate_whose_export_is_not_the_one_beside_it(
    taxonomy: Taxonomy, tiny_export: Path, merged_small: Path, tiny_base: Path, tmp_path: Path
) -> None:
    evaluation = tmp_path / "evaluation"
    gate = evaluate_model(taxonomy, tiny_profile(tiny_base), tiny_export, merged_small, evaluation)
    with pytest.raises(PromotionRefused, match="the gate did not pass"):  # the untrained tiny model fails its real gate
        verify_gate(gate, tiny_export, evaluation)
    passing = lenient(gate, evaluation)
    verify_gate(passing, tiny_export, evaluation)  # the intact chain is accepted
    other = tmp_path / "other-export"
    shutil.copytree(tiny_export, other)
    manifest = read_json(other / "export_manifest.json")
    write_json(other / "export_manifest.json", {**manifest, "checkpoint_sha256": "0" * 64})
    with pytest.raises(PromotionRefused, match="is not the export the gate judged"):
        verify_gate(passing, other, evaluation)
    (other / "export_manifest.json").unlink()
    with pytest.raises(InputDataError, match="did not finish"):
        verify_gate(passing, other, evaluation)
