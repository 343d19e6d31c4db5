"""The evaluate step end to end on the tiny model: every report shows the error analysis, the
out-of-distribution checks, the baseline row and the previous-model comparison, and a real
packaged repository as the previous model can block promotion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_MODEL_VERSION, tiny_profile
from tests.unit.test_evaluate_checks import write_public
from tiergate.artifacts import RepositoryLayout
from tiergate.components.evaluate.comparison import compare, load_previous
from tiergate.components.evaluate.ood import NOT_RUN
from tiergate.components.evaluate.step import evaluate_model
from tiergate.errors import PromotionRefused
from tiergate.gate import decide, load_gate
from tiergate.hashing import read_json
from tiergate.inference import Postprocessor, ThresholdSet
from tiergate.labels import targets_and_known
from tiergate.profiles import load_profile
from tiergate.records import read_jsonl
from tiergate.taxonomy import Taxonomy

SECTIONS_HTML = (
    "Category × context F1",
    "Out-of-distribution checks",
    "Linear baseline",
    "Against the previously promoted model",
    "Error analysis",
)


def test_a_plain_evaluation_says_what_was_not_run(tiny_evaluation: Path) -> None:
    metrics = read_json(tiny_evaluation / "metrics.json")
    assert metrics["ood"]["status"] == "not run" and metrics["ood"]["reason"] == NOT_RUN
    assert metrics["comparison"]["status"] == "first model"
    assert load_gate(tiny_evaluation).judged.compared_with is None
    assert metrics["baseline"]["binary"]["rows"] > 0 and metrics["baseline"]["binary"]["baseline"]["f1"] is not None
    assert set(metrics["error_analysis"]["categories"]) == set(metrics["per_category"])
    summary = (tiny_evaluation / "report.md").read_text()
    assert NOT_RUN in summary and "first model: nothing to compare" in summary and "alt-profanity-check" in summary
    html = (tiny_evaluation / "report.html").read_text()
    assert all(section in html for section in SECTIONS_HTML)


def test_public_suites_and_an_equal_previous_model_are_scored_and_reported(
    taxonomy: Taxonomy, tiny_export: Path, merged_small: Path, tiny_base: Path, tiny_repository: Path, tmp_path: Path
) -> None:
    previous = tmp_path / "previous"
    shutil.copytree(tiny_repository, previous)
    gate = evaluate_model(
        taxonomy,
        tiny_profile(tiny_base),
        tiny_export,
        merged_small,
        tmp_path / "evaluation",
        public_data_dir=write_public(tmp_path / "public"),
        previous_model_dir=previous,
    )
    metrics = read_json(tmp_path / "evaluation" / "metrics.json")
    assert metrics["ood"]["status"] == "run"
    assert metrics["ood"]["sets"]["xstest"]["checks"]["false_positive_rate"]["model"]["prompts"] == 3
    assert set(metrics["ood"]["sets"]["xstest"]["checks"]["false_positive_rate"]) == {"model", "baseline"}
    comparison = metrics["comparison"]
    assert comparison["status"] == "compared" and comparison["blocking"] == []
    # The same model with the thresholds tuned on the same validation split: nothing changes.
    assert all(entry["delta"] == 0.0 for entry in comparison["categories"].values())
    compared = [rule for rule in gate.rules if rule.metric == "f1_delta"]
    assert len(compared) == 18 and all(rule.status == "pass" and rule.value == 0.0 for rule in compared)
    previous_record = comparison["previous"]
    assert gate.judged.compared_with == f"{previous_record['model_version']}@{previous_record['repository_digest']}"
    html = (tmp_path / "evaluation" / "report.html").read_text()
    assert all(section in html for section in SECTIONS_HTML) and "homonyms" in html
    assert "how do i kill" not in (tmp_path / "evaluation" / "report.md").read_text()  # texts stay out of the summary


def test_a_real_previous_repository_blocks_a_worse_candidate(
    taxonomy: Taxonomy, tiny_repository: Path, tiny_evaluation: Path, merged_small: Path, tmp_path: Path
) -> None:
    """Previous: the packaged tiny model flagging every text as threats. Candidate: the same model flagging none."""
    previous_dir = tmp_path / "previous"
    shutil.copytree(tiny_repository, previous_dir)
    previous = load_previous(taxonomy, previous_dir, 16)
    assert previous is not None
    test = read_jsonl(merged_small / "test.jsonl")
    targets, known = targets_and_known(test, taxonomy.labels)
    assert targets[:, taxonomy.labels.index("threats")].sum() >= 3  # the precondition the drop needs
    logits = previous.pipeline.logits([r.text for r in test], [r.context for r in test])
    served = previous.pipeline.postprocessor.thresholds
    flag_all = ThresholdSet(
        served.labels, served.taxonomy_sha256, {**served.thresholds, "threats": 0.0}, served.tiers, served.optional
    )
    before = Postprocessor(flag_all).decide(logits).flags
    silenced = ThresholdSet(
        served.labels, served.taxonomy_sha256, {**served.thresholds, "threats": 2.0}, served.tiers, served.optional
    )
    after = Postprocessor(silenced).decide(logits).flags
    column = taxonomy.labels.index("threats")
    assert before[:, column].all() and not after[:, column].any()
    assert np.array_equal(np.delete(after, column, axis=1), np.delete(before, column, axis=1))
    profile = load_profile("local")
    comparison = compare(taxonomy, previous, after, before, targets, known, 200, 0.95, profile.seed)
    assert comparison["blocking"] == ["threats"]
    recorded = load_gate(tiny_evaluation)
    metrics = {**read_json(tiny_evaluation / "metrics.json"), "comparison": comparison}
    gate = decide(recorded.policy, metrics, read_json(tiny_evaluation / "regression.json"), recorded.judged)
    assert "comparison.threats.f1_delta >= -0.02" in [rule.rule for rule in gate.failures]
    same = compare(taxonomy, previous, before, before, targets, known, 200, 0.95, profile.seed)
    equal_gate = decide(
        recorded.policy, {**metrics, "comparison": same}, read_json(tiny_evaluation / "regression.json"), recorded.judged
    )
    assert not [rule for rule in equal_gate.failures if rule.metric == "f1_delta"]


def test_a_tampered_previous_repository_is_refused_and_the_real_one_is_named(
    taxonomy: Taxonomy, tiny_repository: Path, tmp_path: Path
) -> None:
    """Thresholds edited after packaging, or the manifest deleted: never compared under the real version's name."""
    edited = tmp_path / "edited"
    shutil.copytree(tiny_repository, edited)
    thresholds_path = RepositoryLayout(edited).thresholds
    document = json.loads(thresholds_path.read_text())
    document["thresholds"]["threats"] = 0.0
    thresholds_path.write_text(json.dumps(document))
    with pytest.raises(PromotionRefused, match=r"thresholds\.json has sha256") as error:
        load_previous(taxonomy, edited, 16)
    assert "\n" not in str(error.value) and str(error.value).startswith(f"previous model {edited}")
    unlisted = tmp_path / "unlisted"
    shutil.copytree(tiny_repository, unlisted)
    (unlisted / "repository.json").unlink()
    with pytest.raises(PromotionRefused, match=r"repository\.json is missing"):
        load_previous(taxonomy, unlisted, 16)
    previous = load_previous(taxonomy, tiny_repository, 16)
    assert previous is not None
    manifest = json.loads((tiny_repository / "repository.json").read_text())
    assert (previous.model_version, previous.repository_digest) == (TINY_MODEL_VERSION, manifest["digest"])
    flags = np.zeros((2, len(taxonomy.labels)), bool)
    result = compare(taxonomy, previous, flags, flags, flags, np.ones_like(flags), 0, 0.95, 0)
    assert result["previous"]["model_version"] == TINY_MODEL_VERSION
    assert result["previous"]["repository_digest"] == manifest["digest"]
    assert f"version {TINY_MODEL_VERSION} (repository {manifest['digest'][:12]})" in result["note"]
