"""Live verification of a canary: the regression vectors against its own URL, judged by the rollout's rules.

The vectors run through `tiergate.serving.live_regression`, the code behind `tiergate regression`.
The spec picks the suites that decide and a pass rate for each; with none named, every suite decides
under its own policy, exactly as the offline gate and `tiergate regression` judge them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tiergate.errors import TiergateError
from tiergate.moderation_model import Analysis, AnalysisSpec, FailingVector
from tiergate.regression import Suite
from tiergate.serving import live_regression
from tiergate.serving.operator.rollout import timestamp
from tiergate.taxonomy import Taxonomy

MAX_RECORDED_VECTORS = 20  # the status is an API object: keep it small
MAX_TEXT_CHARS = 120


def judge(result: dict[str, Any], rules: AnalysisSpec) -> tuple[bool, dict[str, str], list[str]]:
    """(passed, a line per deciding suite, the deciding suites' names) for a `run_suites` result."""
    if not rules.suites:
        return bool(result["passed"]), dict(result["summary"]), list(result["suites"])
    lines, passed = {}, True
    for rule in rules.suites:
        suite = result["suites"][rule.name]
        total = suite["hard_total"]
        rate = suite["hard_passed"] / total if total else 1.0
        ok = rate >= rule.min_pass_rate
        passed = passed and ok
        lines[rule.name] = f"{suite['hard_passed']}/{total} (need {rule.min_pass_rate:.0%})"
    return passed, lines, [rule.name for rule in rules.suites]


def unknown_suites(rules: AnalysisSpec, suites: Sequence[Suite]) -> list[str]:
    known = {suite.suite for suite in suites}
    return sorted(rule.name for rule in rules.suites if rule.name not in known)


def analyze(
    url: str,
    model: str,
    version: str,
    rules: AnalysisSpec,
    suites: Sequence[Suite],
    taxonomy: Taxonomy,
    step_index: int,
    traffic_percent: int,
    now: datetime,
    deadline_s: float = 900.0,
) -> Analysis:
    """Never raises for the endpoint's sake: an unreachable, wrong or too slow canary is an `EndpointError`
    analysis (retried until the step's timeout). The whole analysis gets `deadline_s`: a canary that
    answers slowly cannot hold the operator's one worker longer than that."""
    record: dict[str, Any] = {
        "version": version, "step_index": step_index, "traffic_percent": traffic_percent, "time": timestamp(now), "url": url,
    }  # fmt: skip
    missing = unknown_suites(rules, suites)
    if missing:
        return Analysis(**record, passed=False, reason=f"UnknownSuite: {', '.join(missing)}")
    outcome: list[dict[str, Any] | TiergateError] = []

    def run() -> None:
        try:
            client = live_regression.connect(
                url, model, taxonomy, timeout_s=rules.request_timeout_seconds, expect_version=version, retries=1
            )
            try:
                outcome.append(live_regression.run(client, suites, taxonomy))
            finally:
                client.close()
        except TiergateError as error:
            outcome.append(error)

    worker = threading.Thread(target=run, name="canary-analysis", daemon=True)  # abandoned, not awaited, past the deadline
    worker.start()
    worker.join(deadline_s)
    if not outcome:
        error_text = f"the analysis took longer than {deadline_s:.0f} s (the step timeout)"
        return Analysis(**record, passed=False, reason="EndpointError", suites={"error": error_text})
    result = outcome[0]
    if isinstance(result, TiergateError):
        return Analysis(**record, passed=False, reason="EndpointError", suites={"error": str(result)[:300]})
    passed, lines, deciding = judge(result, rules)
    failing = [
        FailingVector(id=vector["id"], suite=vector["suite"], text=vector["text"][:MAX_TEXT_CHARS], context=vector["context"])
        for vector in live_regression.failing_vectors(result, deciding)
    ]
    return Analysis(
        **record,
        passed=passed,
        reason="Passed" if passed else "VectorsFailed",
        suites=lines,
        failing_vectors=failing[:MAX_RECORDED_VECTORS] if not passed else [],
    )
