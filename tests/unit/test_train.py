from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_profile
from tiergate.artifacts import CHECKPOINT_INFO
from tiergate.components.train.checkpoint import load_checkpoint_info
from tiergate.components.train.step import train_phase
from tiergate.components.train.trainer import smoothed_targets
from tiergate.components.train.weights import compute_pos_weight
from tiergate.errors import ConfigError, LabelMismatchError
from tiergate.records import read_jsonl
from tiergate.taxonomy import Taxonomy, parse_taxonomy


def test_pos_weight_is_neg_over_pos_capped_by_tier(taxonomy: Taxonomy, merged_small: Path) -> None:
    records = read_jsonl(merged_small / "phase3.jsonl")
    weights = compute_pos_weight(records, taxonomy)
    total = len(records)
    harassment = sum("harassment" in record.labels for record in records)
    assert harassment > 0
    assert weights["harassment"] == pytest.approx(min(10.0, (total - harassment) / harassment))
    assert weights["furry"] == taxonomy.tiers[5].pos_weight_cap  # no positives: the tier cap, from config
    for name, value in weights.items():
        assert value <= taxonomy.tier_of(name).pos_weight_cap


def test_changing_a_cap_in_config_changes_the_loss_weights(taxonomy_dict: dict[str, Any], merged_small: Path) -> None:
    """docs/lessons.md#hardcoded-cap-overrode-config: a literal in code overrode config. Here the config is the only source."""
    records = read_jsonl(merged_small / "phase3.jsonl")
    before = compute_pos_weight(records, parse_taxonomy(taxonomy_dict))
    taxonomy_dict["tiers"][5]["pos_weight_cap"] = 2.5
    taxonomy_dict["tiers"][1]["pos_weight_cap"] = 3.0
    after = compute_pos_weight(records, parse_taxonomy(taxonomy_dict))
    assert after["profanity"] == 2.5 and before["profanity"] > 2.5
    assert after["csam"] == 3.0 and before["csam"] > 3.0
    assert after["harassment"] == before["harassment"]  # tier 3 untouched


def test_smoothed_targets() -> None:
    labels = torch.tensor([[1.0, 0.0]])
    assert torch.allclose(smoothed_targets(labels, 0.1), torch.tensor([[0.95, 0.05]]))


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_training_is_deterministic_on_cpu(taxonomy: Taxonomy, merged_small: Path, tiny_base: Path, tmp_path: Path) -> None:
    profile = tiny_profile(tiny_base)
    first = train_phase(taxonomy, profile, merged_small, "phase1", tmp_path / "a")
    second = train_phase(taxonomy, profile, merged_small, "phase1", tmp_path / "b")
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert first.best == second.best
    base = _weights(tiny_base) if (tiny_base / "model.safetensors").exists() else {}
    changed = [
        key
        for key in a
        if key.startswith("bert.")
        and key.removeprefix("bert.") in base
        and not torch.equal(a[key], base[key.removeprefix("bert.")])
    ]
    assert changed, "training must move the encoder weights"


def test_checkpoint_carries_labels_and_provenance(taxonomy: Taxonomy, tiny_checkpoints: Path) -> None:
    info = load_checkpoint_info(tiny_checkpoints / "phase3", taxonomy)
    assert info.labels == taxonomy.labels and info.taxonomy_sha256 == taxonomy.labels_sha256
    assert info.phase == "phase3" and info.parent is not None and info.parent.startswith("phase2@")
    assert set(info.dataset_sha256) == {"merged", "phase3"}
    assert info.epochs and "eval_macro_f1" in info.best
    assert set(info.pos_weight) == set(taxonomy.labels)
    assert info.config["train"]["phases"]["phase3"]["epochs"] == 1
    metrics = json.loads((tiny_checkpoints / "phase3" / "metrics.json").read_text())
    assert metrics["phase"] == "phase3"


def test_warm_start_refuses_a_label_order_mismatch(
    taxonomy: Taxonomy, tiny_checkpoints: Path, merged_small: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """docs/lessons.md#label-order: three models used a different label order. A checkpoint in another order cannot be loaded."""
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_checkpoints / "phase1", tampered)
    info = json.loads((tampered / CHECKPOINT_INFO).read_text())
    info["labels"][3], info["labels"][14] = info["labels"][14], info["labels"][3]
    (tampered / CHECKPOINT_INFO).write_text(json.dumps(info))
    with pytest.raises(LabelMismatchError, match="label ORDER differs"):
        train_phase(taxonomy, tiny_profile(tiny_base), merged_small, "phase2", tmp_path / "out", init_from=tampered)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_unknown_phase_is_refused(taxonomy: Taxonomy, merged_small: Path, tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown phase 'phase9'"):
        train_phase(taxonomy, tiny_profile(tiny_base), merged_small, "phase9", tmp_path)


def test_progress_is_logged_every_tenth_of_the_steps(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from tiergate.components.train.trainer import EpochLogger

    logger = EpochLogger("phase1", batch_size=32)
    state = SimpleNamespace(max_steps=100, global_step=0)
    with caplog.at_level("INFO"):
        logger.on_train_begin(None, state, None)
        for step in range(1, 101):
            state.global_step = step
            logger.on_step_end(None, state, None)
    lines = [record.getMessage() for record in caplog.records if "texts/s" in record.getMessage()]
    assert len(lines) == 9 and lines[0].startswith("phase1: step 10/100 (10%)")  # 10..90; the end has its own line
    assert "min left" in lines[-1]


def test_the_head_gets_its_own_learning_rate(taxonomy: Taxonomy, merged_small: Path, tiny_base: Path, tmp_path: Path) -> None:
    """Encoder parameters on train.learning_rate, the new head's on train.head_learning_rate, each once."""
    from tiergate.components.train.step import TRAINING_PADDING, _load_model, build_trainer, read_phase_data
    from tiergate.preprocessing import InputEncoder

    profile = tiny_profile(tiny_base, train={"learning_rate": 2e-5, "head_learning_rate": 1e-3})
    tokenizer, model = _load_model(str(tiny_base), taxonomy)
    records = read_phase_data(merged_small, "phase1")
    encoder = InputEncoder(tokenizer, profile.train.max_length, TRAINING_PADDING)
    weights = dict.fromkeys(taxonomy.labels, 1.0)
    trainer = build_trainer(model, encoder, taxonomy, profile, "phase1", records, weights, tmp_path)
    optimizer = trainer.create_optimizer()
    rates = {id(parameter): group["lr"] for group in optimizer.param_groups for parameter in group["params"]}
    trainable = {name: parameter for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert len(rates) == sum(len(group["params"]) for group in optimizer.param_groups) == len(trainable)
    head = {name for name in trainable if not name.startswith(f"{model.base_model_prefix}.")}
    assert head and all(name.startswith("classifier.") for name in head)
    assert {rates[id(trainable[name])] for name in head} == {1e-3}
    assert {rates[id(parameter)] for name, parameter in trainable.items() if name not in head} == {2e-5}
    # Unset: the Trainer's own optimizer, one rate for everything.
    plain = build_trainer(model, encoder, taxonomy, tiny_profile(tiny_base), "phase1", records, weights, tmp_path / "p")
    assert {group["lr"] for group in plain.create_optimizer().param_groups} == {1e-3}
