"""The same pipeline that compiles for the cluster, run end to end by kfp.local on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiergate.pipelines.runner import run_local

pytestmark = pytest.mark.slow


def test_local_run_ends_green_without_promotion_when_the_gate_fails(tmp_path: Path, tiny_base: Path) -> None:
    outputs = run_local(tmp_path / "run", profile="local", categories="threats,spam,harassment", base_model=str(tiny_base))
    gate = json.loads((outputs["evaluation"] / "gate.json").read_text())
    assert not gate["passed"] and gate["failures"]
    assert not outputs["promoted"] and outputs["model_repository"] is None
    result = outputs["not_promoted"].read_text()
    assert result.startswith("# Not promoted") and gate["failures"][0]["rule"] in result
    merged = next(iter((tmp_path / "run" / "kfp").glob("*/merge/merged")))
    counts = json.loads((merged / "manifest.json").read_text())["counts"]["splits"]
    assert sum(counts.values()) > 0
    generated = list((tmp_path / "run" / "kfp").glob("*/for-loop-*-iteration-*/generate/generated/manifest.json"))
    assert len(generated) == 3  # one generate task per requested category (ParallelFor)
