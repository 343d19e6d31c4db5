from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import tiny_profile
from tiergate.components.evaluate.metrics import evaluate_split
from tiergate.components.evaluate.regression import load_suites, run_suites
from tiergate.components.evaluate.step import evaluate_model
from tiergate.components.evaluate.thresholds import search_threshold, tune_thresholds
from tiergate.errors import ConfigError, LabelMismatchError
from tiergate.gate import Judged, decide, gate_policy, verify_decision
from tiergate.inference import Postprocessor, ThresholdSet
from tiergate.paths import project_path
from tiergate.profiles import load_profile
from tiergate.records import Context, Kind, Source, make_record
from tiergate.taxonomy import Taxonomy

RNG = np.random.default_rng(0)
GENERAL = Context(audience="general", surface="message")


def _synthetic(taxonomy: Taxonomy, rows: int = 400, positive_rate: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Targets, and scores that separate them well: positives ~0.8, negatives ~0.2."""
    targets = RNG.random((rows, len(taxonomy.labels))) < positive_rate
    scores = np.clip(np.where(targets, 0.8, 0.2) + RNG.normal(0, 0.08, targets.shape), 0, 1).astype(np.float32)
    return scores, targets


def test_thresholds_stay_inside_tier_ranges_and_overrides(taxonomy: Taxonomy) -> None:
    scores, targets = _synthetic(taxonomy)
    # Make harassment's val optimum sit high (docs/lessons.md#val-test-threshold-skew): negatives score up to ~0.85.
    # F1 rises with the threshold all the way to ~0.85, so the unconstrained optimum is above the cap.
    column = taxonomy.labels.index("harassment")
    negatives = ~targets[:, column]
    scores[negatives, column] = np.linspace(0.3, 0.85, int(negatives.sum()))
    scores[~negatives, column] = 0.95
    document = tune_thresholds(taxonomy, scores, targets)
    for name in taxonomy.labels:
        low, high = taxonomy.threshold_bounds(name)
        assert low - 1e-9 <= document["thresholds"][name] <= high + 1e-9, name
    assert document["thresholds"]["harassment"] == 0.65  # capped by the override, not 0.85+
    assert document["search"]["harassment"]["range"] == [0.30, 0.65]
    assert document["labels"] == taxonomy.labels and document["taxonomy_sha256"] == taxonomy.labels_sha256


def test_recall_floor_steers_the_search() -> None:
    # 20 confident positives, 30 buried among 100 negatives: F1 peaks above the negatives (recall 0.4);
    # a 0.9 recall floor forces the threshold down into them.
    scores = np.concatenate([np.full(20, 0.9), np.linspace(0.25, 0.45, 30), np.linspace(0.2, 0.5, 100)])
    targets = np.concatenate([np.ones(50, bool), np.zeros(100, bool)])
    free = search_threshold(scores, targets, 0.2, 0.6, 0.01, None)
    floored = search_threshold(scores, targets, 0.2, 0.6, 0.01, 0.9)
    assert free["val_recall"] < 0.9 <= floored["val_recall"]
    assert floored["threshold"] <= 0.25 and free["threshold"] > 0.5
    unreachable = search_threshold(scores, targets, 0.6, 0.9, 0.01, 0.99)
    assert "unreachable" in unreachable["note"] and unreachable["threshold"] == 0.6
    empty = search_threshold(scores, np.zeros(150, bool), 0.2, 0.6, 0.01, None)
    assert empty["val_f1"] is None and 0.2 <= empty["threshold"] <= 0.6


def _records(count: int) -> list:
    source = Source(generator="t", model="t", prompt_id="p", category=None, kind=Kind.INNOCUOUS)
    return [make_record(f"text {i}", GENERAL, [], source) for i in range(count)]


def _gate_for(
    taxonomy: Taxonomy, scores: np.ndarray, targets: np.ndarray, regression: dict[str, Any], suites: Any = (), **settings: Any
) -> dict:
    document = tune_thresholds(taxonomy, scores, targets)
    flags = (
        Postprocessor(
            ThresholdSet(taxonomy.labels, taxonomy.labels_sha256, document["thresholds"], document["tiers"], document["optional"])
        )
        .decide(np.log(scores / (1 - scores + 1e-9) + 1e-9))
        .flags
    )
    metrics = evaluate_split(taxonomy, _records(len(scores)), scores, flags, targets, document, 5, 50, 0.95, 0, 10)
    profile = load_profile("local", {"evaluate": settings}) if settings else load_profile("production")
    judged = Judged(**dict.fromkeys(Judged.model_fields, "x"))
    policy = gate_policy(taxonomy, profile.evaluate, 5, list(suites))
    gate = decide(policy, metrics, regression, judged)
    verify_decision(gate)  # what evaluation writes is what every later step recomputes
    return gate.as_json()


PASSING_REGRESSION = {"passed": True, "suites": {}, "summary": {}}


def test_clean_scores_pass_the_gate(taxonomy: Taxonomy) -> None:
    scores, targets = _synthetic(taxonomy)
    gate = _gate_for(taxonomy, scores, targets, PASSING_REGRESSION)
    assert gate["passed"] and gate["decision"] == "promote" and gate["failures"] == []
    assert len([r for r in gate["rules"] if r["metric"] == "f1"]) == 33
    assert len([r for r in gate["rules"] if r["metric"] == "recall"]) == 4  # T1 only


def test_t1_recall_floor_violation_fails_the_gate(taxonomy: Taxonomy) -> None:
    scores, targets = _synthetic(taxonomy)
    column = taxonomy.labels.index("self_harm")
    positives = np.flatnonzero(targets[:, column])
    hidden = positives[: len(positives) // 5]  # 20% of self_harm positives score like negatives
    scores[hidden, column] = 0.05
    gate = _gate_for(taxonomy, scores, targets, PASSING_REGRESSION)
    assert not gate["passed"]
    failing = {rule["rule"] for rule in gate["failures"]}
    assert "self_harm.recall >= 0.9" in failing
    assert gate["summary"]["categories_failing"] == ["self_harm"]


def test_failing_regression_vector_fails_the_gate_even_when_f1_passes(taxonomy: Taxonomy) -> None:
    scores, targets = _synthetic(taxonomy)
    suites = load_suites(project_path("config/regression"), taxonomy)

    def nothing_flagged(texts: list[str], contexts: list[Context]) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(texts), 33), np.float32), np.zeros((len(texts), 33), bool)

    regression = run_suites(suites, taxonomy, nothing_flagged)
    assert not regression["passed"]
    assert regression["suites"]["hard_negatives"]["passed"]  # nothing flagged: every must-not-flag holds
    assert not regression["suites"]["positives"]["passed"]
    adversarial = next(suite for suite in suites if suite.suite == "adversarial")
    gaps = [vector.id for vector in adversarial.vectors if vector.expected == "known_gap"]
    statuses = {vector["id"]: vector["status"] for vector in regression["suites"]["adversarial"]["vectors"]}
    assert gaps and all(statuses[gap] == "xfail" for gap in gaps)  # known gaps are xfail, never failures
    assert regression["suites"]["adversarial"]["xfail"] == len(gaps)
    assert not regression["suites"]["adversarial"]["passed"]  # the evasion vectors are hard requirements
    gate = _gate_for(taxonomy, scores, targets, regression, suites)
    assert not gate["passed"]
    assert [rule["rule"] for rule in gate["failures"]] == [
        "regression.adversarial",
        "regression.context",
        "regression.multilabel",
        "regression.positives",
    ]
    assert all(rule["metric"] == "vectors" for rule in gate["failures"])


def test_multilabel_policy_needs_three_of_five(taxonomy: Taxonomy) -> None:
    suites = [s for s in load_suites(project_path("config/regression"), taxonomy) if s.suite == "multilabel"]
    wanted = [set(v.flag) for v in suites[0].vectors]

    def some(count: int) -> Any:
        def classify(texts: list[str], contexts: list[Context]) -> tuple[np.ndarray, np.ndarray]:
            flags = np.zeros((len(texts), 33), bool)
            for row, names in enumerate(wanted[:count]):
                for name in names:
                    flags[row, taxonomy.labels.index(name)] = True
            return flags.astype(np.float32), flags

        return classify

    assert run_suites(suites, taxonomy, some(3))["passed"]
    assert not run_suites(suites, taxonomy, some(2))["passed"]


def test_not_measurable_is_never_a_silent_pass(taxonomy: Taxonomy) -> None:
    scores, targets = _synthetic(taxonomy, rows=60, positive_rate=0.05)
    strict = _gate_for(taxonomy, scores, targets, PASSING_REGRESSION)
    assert not strict["passed"] and all(r["status"] == "not_measurable" for r in strict["failures"])
    lenient = _gate_for(taxonomy, scores, targets, PASSING_REGRESSION, not_measurable="warn")
    assert lenient["warnings"] and all(r["status"] == "not_measurable" for r in lenient["warnings"])


def test_threshold_files_from_another_taxonomy_are_refused(taxonomy: Taxonomy, tmp_path: Path) -> None:
    scores, targets = _synthetic(taxonomy)
    document = tune_thresholds(taxonomy, scores, targets)
    document["labels"] = list(reversed(document["labels"]))
    (tmp_path / "thresholds.json").write_text(json.dumps(document))
    with pytest.raises(LabelMismatchError, match="label ORDER differs"):
        ThresholdSet.load(tmp_path / "thresholds.json", taxonomy.labels)


def test_postprocessor_optional_switch_and_routing_tier(taxonomy: Taxonomy) -> None:
    thresholds = ThresholdSet(
        taxonomy.labels,
        taxonomy.labels_sha256,
        dict.fromkeys(taxonomy.labels, 0.5),
        {c.name: c.tier for c in taxonomy.categories},
        ["anti_trans"],
    )
    post = Postprocessor(thresholds)
    logits = np.full((3, 33), -5.0, np.float32)
    logits[0, taxonomy.labels.index("anti_trans")] = 5.0
    logits[1, taxonomy.labels.index("profanity")] = 5.0
    logits[1, taxonomy.labels.index("csam")] = 5.0
    on, off = post.decide(logits), post.decide(logits, enabled_optional=[])
    assert on.flags[0].sum() == 1 and off.flags[0].sum() == 0
    assert np.array_equal(on.scores, off.scores)  # the switch never touches scores
    assert on.max_tier.tolist() == [3, 1, 0]
    with pytest.raises(Exception, match="not optional"):
        post.decide(logits, enabled_optional=["threats"])


def test_bad_regression_suites_are_refused(taxonomy: Taxonomy, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "suite: x\ndescription: d\npolicy: all\nvectors:\n  - {id: v1, text: hi, context: general/message, flag: [threatz]}\n"
    )
    with pytest.raises(ConfigError, match=r"unknown categories \['threatz'\]"):
        load_suites(tmp_path, taxonomy)
    (tmp_path / "a.yaml").write_text(
        "suite: x\ndescription: d\npolicy: all\nvectors:\n  - {id: v1, text: hi, context: general/message}\n"
    )
    with pytest.raises(ConfigError, match="needs a context and a rule"):
        load_suites(tmp_path, taxonomy)
    with pytest.raises(ConfigError, match="no regression suites"):
        load_suites(tmp_path / "empty", taxonomy)


def test_vectors_cover_every_category_and_policy_minimums(taxonomy: Taxonomy) -> None:
    suites = {suite.suite: suite for suite in load_suites(project_path("config/regression"), taxonomy)}
    positives = {name for vector in suites["positives"].vectors for name in vector.flag}
    assert positives == set(taxonomy.labels)
    assert len(suites["hard_negatives"].vectors) >= 50
    assert len(suites["multilabel"].vectors) == 5 and suites["multilabel"].policy.min_pass == 3  # type: ignore[union-attr]
    hard = [vector for vector in suites["adversarial"].vectors if vector.expected == "pass"]
    evasion = ("adv-threat-", "adv-leet-", "adv-context-")
    promoted = suites["adversarial"].promote_xpass
    assert promoted and hard and all(vector.id.startswith(evasion) or vector.id in promoted for vector in hard)


def test_evaluate_model_end_to_end_on_the_exported_fp16(
    taxonomy: Taxonomy, tiny_export: Path, merged_small: Path, tiny_base: Path, tmp_path: Path
) -> None:
    gate = evaluate_model(taxonomy, tiny_profile(tiny_base), tiny_export, merged_small, tmp_path)
    for name in (
        "thresholds.json",
        "metrics.json",
        "regression.json",
        "gate.json",
        "report.html",
        "report.md",
        "kfp_metrics.json",
    ):
        assert (tmp_path / name).is_file(), name
    written = json.loads((tmp_path / "gate.json").read_text())
    assert written == gate.as_json()
    assert written["judged"]["model_file"] == "model_fp16.onnx"
    from tiergate.hashing import sha256_file

    assert written["judged"]["model_sha256"] == sha256_file(tiny_export / "model_fp16.onnx")
    assert written["judged"]["thresholds_sha256"] == sha256_file(tmp_path / "thresholds.json")
    assert written["passed"] == (not written["failures"])
    assert all({"rule", "value", "floor", "status"} <= set(rule) for rule in written["rules"])
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "SMOKE-TEST" in html
