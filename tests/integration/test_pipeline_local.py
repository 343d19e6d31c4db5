"""The same pipeline that compiles for the cluster, run end to end by kfp.local on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiergate.pipelines.runner import run_local

pytestmark = pytest.mark.slow


PUBLIC_FIXTURES = Path(__file__).parents[1] / "fixtures" / "public"


def test_local_run_ends_green_without_promotion_when_the_gate_fails(tmp_path: Path, tiny_base: Path) -> None:
    """Also the public-data input: the fixture sets (a few real rows each) flow through import, merge and evaluation."""
    profile = tmp_path / "local-public.yaml"  # the local profile, training on the public sets too
    profile.write_text("extends: local\nname: local-public\npublic_data:\n  datasets: null\n", encoding="utf-8")
    outputs = run_local(
        tmp_path / "run",
        profile=str(profile),
        categories="threats,spam,harassment",
        base_model=str(tiny_base),
        public_data=str(PUBLIC_FIXTURES),
    )
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

    root = next((tmp_path / "run" / "kfp").glob("tiergate-*"))
    public = json.loads((root / "import-public-data" / "public" / "manifest.json").read_text())
    assert public["counts"]["records"] > 0 and "davidson" in public["counts"]["by_dataset"]
    assert not {"xstest", "simplesafetytests"} & set(public["counts"]["by_dataset"])  # evaluation-only: never trained on
    report = json.loads((merged / "report.json").read_text())
    assert report["input_sources"]["public:davidson"] > 0
    assert report["coverage"]["threats"]["public:davidson"]["unknown"] > 0  # a set knows only its own categories
    assert not any(source.startswith(("public:xstest", "public:simplesafetytests")) for source in report["input_sources"])
    metrics = json.loads((outputs["evaluation"] / "metrics.json").read_text())
    assert "offline" in metrics["sources"] and any(source.startswith("public:") for source in metrics["sources"])
    assert metrics["ood"]["status"] == "run"  # the evaluation-only sets, read from the same location
    statuses = {name: entry["status"] for name, entry in metrics["ood"]["sets"].items()}
    assert statuses == {"xstest": "run", "simplesafetytests": "run"}
    assert metrics["baseline"]["binary"]["rows"] > 0 and "model" in metrics["baseline"]["binary"]
