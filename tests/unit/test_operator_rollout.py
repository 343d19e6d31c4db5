"""Every phase transition of the rollout, as tables over the pure state machine (no API server, no clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tiergate.moderation_model import Analysis, FailingVector, ModerationModelSpec, ModerationModelStatus, VersionRef
from tiergate.serving.operator.inferenceservice import Observed
from tiergate.serving.operator.rollout import (
    Decision,
    ServiceTarget,
    Snapshot,
    analysed,
    decide,
    hold,
    is_settled,
    plan_steps,
    timestamp,
    verified,
)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def ref(version: str, digit: str) -> VersionRef:
    return VersionRef(
        version=version, storage_uri=f"s3://models/tiergate/{version}/{digit * 64}", digest=digit * 64, gate_digest="f" * 64
    )


OLD, NEW = ref("v1", "a"), ref("v2", "b")


def spec_for(version: VersionRef, **rollout: Any) -> ModerationModelSpec:
    return ModerationModelSpec.model_validate(
        {
            "model": {
                "name": "tiergate",
                "version": version.version,
                "storageUri": version.storage_uri,
                "digest": version.digest,
                "gateDigest": version.gate_digest,
            },
            "rollout": {"steps": [10, 50, 100], "stepIntervalSeconds": 60, "timeoutSeconds": 600, **rollout},
        }
    )


def service(version: VersionRef | None, canary: int | None = None, ready: bool = True, latest: int | None = None) -> Observed:
    if version is None:
        return Observed(exists=False)
    return Observed(
        exists=True,
        storage_uri=version.storage_uri,
        canary_percent=canary,
        ready=ready,
        latest_percent=latest,
        canary_url="http://latest-tiergate-predictor.ns.example.com",
    )


def snap(
    status: ModerationModelStatus,
    isvc: Observed,
    generation: int = 2,
    spec: ModerationModelSpec | None = None,
    now: datetime = NOW,
) -> Snapshot:
    return Snapshot(generation=generation, spec=spec or spec_for(NEW), status=status, isvc=isvc, now=now)


def canary_status(
    step: int, started: datetime = NOW - timedelta(seconds=61), current: VersionRef | None = OLD
) -> ModerationModelStatus:
    """At `step` of [10, 50, 100], with the passing analysis of the step before that earned it."""
    earned = None
    if step > 0:
        earned = Analysis(
            version="v2",
            step_index=step - 1,
            traffic_percent=[10, 50, 100][step - 1],
            time=timestamp(NOW),
            passed=True,
            reason="Passed",
        )
    return ModerationModelStatus(
        phase="Canary",
        observed_generation=2,
        candidate=NEW,
        current=current,
        step_index=step,
        step_started_at=timestamp(started),
        last_analysis=earned,
    )


PROMOTED_OLD = ModerationModelStatus(phase="Promoted", observed_generation=1, current=OLD, traffic_percent=100)


def analysis(passed: bool, reason: str = "", failing: tuple[str, ...] = ()) -> Analysis:
    return Analysis(
        version="v2",
        step_index=0,
        traffic_percent=10,
        time=timestamp(NOW),
        passed=passed,
        reason=reason or ("Passed" if passed else "VectorsFailed"),
        suites={"positives": "37/37 (need 37)" if passed else "0/37 (need 37)"},
        failing_vectors=[FailingVector(id=name, suite="positives", text="t", context="general/message") for name in failing],
    )


# --- a new spec -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "isvc", "expected_target"),
    [
        (ModerationModelStatus(), service(None), None),  # first version: nothing to hold
        (PROMOTED_OLD, service(OLD), ServiceTarget(OLD, None)),  # the serving version keeps all traffic
        # an abandoned canary of an earlier spec gets no traffic while the new one is verified
        (PROMOTED_OLD, service(ref("v9", "9"), canary=50), ServiceTarget(None, 0)),
    ],
)
def test_new_spec_verifies_before_anything_is_deployed(
    status: ModerationModelStatus, isvc: Observed, expected_target: ServiceTarget | None
) -> None:
    decision = decide(snap(status, isvc))
    assert decision.action == "verify"
    assert decision.status.phase == "Verifying" and decision.status.candidate == NEW
    assert decision.status.observed_generation == 2 and decision.status.rejected_generation is None
    assert decision.service == expected_target
    assert [event.reason for event in decision.events] == ["RolloutStarted"]


def test_spec_naming_the_serving_version_is_promoted_without_a_rollout() -> None:
    decision = decide(snap(PROMOTED_OLD, service(OLD), spec=spec_for(OLD, steps=[25, 100])))
    assert decision.action is None and decision.status.phase == "Promoted" and decision.status.traffic_percent == 100
    assert decision.service == ServiceTarget(OLD, None)


def test_invalid_spec_fails_once_and_holds_the_serving_version() -> None:
    bad = Snapshot(
        generation=3, spec=None, status=PROMOTED_OLD, isvc=service(OLD), now=NOW, spec_error="spec: rollout.steps: bad"
    )
    decision = decide(bad)
    assert decision.status.phase == "Failed" and "rollout.steps" in decision.status.message
    assert decision.service == ServiceTarget(OLD, None) and decision.events[0].reason == "InvalidSpec"
    again = decide(replace(bad, status=decision.status))
    assert again.status == decision.status and not again.events  # settled: no repeated event


# --- verification -----------------------------------------------------------------------------------------


def verifying(current: VersionRef | None = OLD) -> ModerationModelStatus:
    return ModerationModelStatus(phase="Verifying", observed_generation=2, candidate=NEW, current=current)


def test_verification_mismatch_fails_and_deploys_nothing() -> None:
    decision = verified(snap(verifying(), service(OLD)), "refused", "digest 1234 is not the expected 5678")
    assert decision.status.phase == "Failed" and decision.status.rejected_generation == 2
    assert "not deployed" in decision.status.message and "5678" in decision.status.message
    assert decision.service == ServiceTarget(OLD, None)  # the old version keeps serving, untouched
    assert [event.type for event in decision.events] == ["Warning"]
    verified_condition = {c.type: c for c in decision.status.conditions}["Verified"]
    assert verified_condition.status == "False"


def test_unreachable_store_is_retried_not_failed() -> None:
    decision = verified(snap(verifying(), service(OLD)), "unavailable", "connection refused")
    assert decision.status.phase == "Verifying" and decision.requeue_after and decision.requeue_after > 0
    assert decision.status.rejected_generation is None


@pytest.mark.parametrize(
    ("current", "steps", "target"),
    [
        (OLD, [10, 50, 100], ServiceTarget(NEW, 10)),
        (OLD, [100], ServiceTarget(NEW, 0)),  # a one-step rollout over a serving version runs dark first
        (None, [10, 50, 100], ServiceTarget(NEW, None)),  # first version: KServe routes all traffic to it
    ],
)
def test_verified_candidate_is_deployed_at_its_first_step(
    current: VersionRef | None, steps: list[int], target: ServiceTarget
) -> None:
    decision = verified(snap(verifying(current), service(current), spec=spec_for(NEW, steps=steps)), "verified", "ok")
    assert decision.status.phase == "Canary" and decision.status.step_index == 0
    assert decision.service == target
    assert decision.status.step_started_at == timestamp(NOW)
    assert "Verified" in [event.reason for event in decision.events]


# --- canary steps -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("isvc", "started_ago", "phase", "action"),
    [
        (service(OLD), 5, "Canary", None),  # not patched yet: wait
        (service(NEW, canary=10, ready=False), 5, "Canary", None),  # revision starting
        (service(NEW, canary=10, ready=True), 5, "Canary", None),  # ready, interval not over
        (service(NEW, canary=10, ready=True), 61, "Canary", "analyze"),  # ready, interval over
        (service(NEW, canary=10, ready=False), 601, "RolledBack", None),  # never ready: rolled back
        (service(NEW, canary=50, ready=True), 61, "Canary", None),  # at another step than the status: repatch, wait
    ],
)
def test_canary_step(isvc: Observed, started_ago: int, phase: str, action: str | None) -> None:
    status = canary_status(0, NOW - timedelta(seconds=started_ago))
    decision = decide(snap(status, isvc))
    assert decision.status.phase == phase
    assert decision.action == action
    if phase == "Canary":
        assert decision.service == ServiceTarget(NEW, 10)
        assert action == "analyze" or (decision.requeue_after is not None and decision.requeue_after > 0)
    else:
        assert decision.service == ServiceTarget(None, 0) and decision.status.traffic_percent == 0
        assert "not ready" in decision.status.message and decision.status.rejected_generation == 2


def test_passing_analysis_moves_to_the_next_step() -> None:
    decision = analysed(snap(canary_status(0), service(NEW, canary=10)), analysis(True))
    assert decision.status.phase == "Canary" and decision.status.step_index == 1
    assert decision.service == ServiceTarget(NEW, 50) and decision.status.step_started_at == timestamp(NOW)
    assert decision.status.last_analysis is not None and decision.status.last_analysis.passed
    assert "StepPassed" in [event.reason for event in decision.events]


def test_the_full_step_promotes_once_ready() -> None:
    status = canary_status(2)
    waiting = decide(snap(status, service(NEW, canary=50)))
    assert waiting.service == ServiceTarget(NEW, None) and waiting.status.phase == "Canary"
    decision = decide(snap(status, service(NEW, canary=None, ready=True)))
    assert decision.status.phase == "Promoted" and decision.status.traffic_percent == 100
    assert decision.status.current == NEW and decision.status.previous == OLD and decision.status.candidate is None
    assert decision.service == ServiceTarget(NEW, None)
    assert is_settled(decision.status, 2)
    ready = {c.type: c for c in decision.status.conditions}["Ready"]
    assert ready.status == "True" and ready.last_transition_time == timestamp(NOW)


def test_first_version_is_analysed_at_full_traffic_before_promotion() -> None:
    status = canary_status(0, current=None)
    decision = decide(snap(status, service(NEW)))
    assert decision.action == "analyze"
    promoted = analysed(snap(status, service(NEW)), analysis(True))
    assert promoted.status.phase == "Promoted" and promoted.status.current == NEW and promoted.status.previous is None


def test_failing_analysis_rolls_back_with_the_failing_vectors() -> None:
    decision = analysed(snap(canary_status(1), service(NEW, canary=50)), analysis(False, failing=("pos-threat-1", "pos-hate-2")))
    assert decision.status.phase == "RolledBack" and decision.status.traffic_percent == 0
    assert decision.service == ServiceTarget(None, 0)
    assert decision.status.current == OLD  # the previous verified version serves
    assert decision.status.rejected_generation == 2
    assert "pos-threat-1" in decision.status.message and "v1" in decision.status.message
    assert [v.id for v in decision.status.last_analysis.failing_vectors] == ["pos-threat-1", "pos-hate-2"]  # type: ignore[union-attr]
    assert decision.events[0].type == "Warning" and decision.events[0].reason == "AnalysisFailed"


def test_failing_first_version_fails_and_removes_its_service() -> None:
    decision = analysed(snap(canary_status(0, current=None), service(NEW)), analysis(False, failing=("pos-1",)))
    assert decision.status.phase == "Failed" and decision.service == ServiceTarget(None, None, delete=True)
    assert "nothing serves" in decision.status.message


def test_unreachable_canary_is_retried_until_the_timeout() -> None:
    early = analysed(snap(canary_status(0), service(NEW, canary=10)), analysis(False, reason="EndpointError"))
    assert early.status.phase == "Canary" and early.requeue_after and early.service == ServiceTarget(NEW, 10)
    late = analysed(
        snap(canary_status(0, NOW - timedelta(seconds=700)), service(NEW, canary=10)), analysis(False, reason="EndpointError")
    )
    assert late.status.phase == "RolledBack"


# --- settled states ---------------------------------------------------------------------------------------


def rolled_back() -> ModerationModelStatus:
    return ModerationModelStatus(phase="RolledBack", observed_generation=2, candidate=NEW, current=OLD, rejected_generation=2)


@pytest.mark.parametrize(
    ("isvc", "target"),
    [
        (service(NEW, canary=0), ServiceTarget(None, 0)),  # the rejected candidate keeps no traffic
        (service(NEW, canary=30), ServiceTarget(None, 0)),  # someone moved traffic by hand: back to 0
        (service(None), ServiceTarget(OLD, None)),  # service deleted: recreated at the verified version
    ],
)
def test_rolled_back_version_is_not_retried_until_the_spec_changes(isvc: Observed, target: ServiceTarget) -> None:
    decision = decide(snap(rolled_back(), isvc))
    assert decision.action is None and decision.status == rolled_back() and decision.service == target and not decision.events
    retry = decide(snap(rolled_back(), isvc, generation=3, spec=spec_for(ref("v3", "c"))))
    assert retry.action == "verify" and retry.status.candidate == ref("v3", "c")


def test_promoted_self_heals_the_service() -> None:
    status = ModerationModelStatus(phase="Promoted", observed_generation=2, current=NEW, traffic_percent=100)
    assert decide(snap(status, service(None))).service == ServiceTarget(NEW, None)
    assert decide(snap(status, service(NEW, canary=10))).service == ServiceTarget(NEW, None)


def test_restart_mid_rollout_gives_the_same_decision() -> None:
    """The decision depends only on the snapshot: an operator restarted at step 1 continues at step 1."""
    status = canary_status(1)
    first: Decision = decide(snap(status, service(NEW, canary=50)))
    again: Decision = decide(snap(status, service(NEW, canary=50)))
    assert first == again and first.action == "analyze" and first.service == ServiceTarget(NEW, 50)


def test_plan_steps_and_hold() -> None:
    assert plan_steps(spec_for(NEW), ModerationModelStatus()) == [100]
    assert plan_steps(spec_for(NEW, steps=[5, 100]), PROMOTED_OLD) == [5, 100]
    assert plan_steps(spec_for(NEW, steps=[100]), PROMOTED_OLD) == [0, 100]
    assert hold(ModerationModelStatus(), service(NEW)) == ServiceTarget(None, None, delete=True)  # nothing verified
    assert hold(ModerationModelStatus(), service(None)) is None


@pytest.mark.parametrize(
    ("steps", "message"),
    [([10, 50], "last step must be 100"), ([50, 10, 100], "increase"), ([0, 100], "from 1 to 100"), ([], "at least 1")],
)
def test_bad_steps_are_refused(steps: list[int], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        spec_for(NEW, steps=steps)


# --- what a damaged or forged status cannot do (the hostile probe's findings) --------------------------------


def test_a_candidate_other_than_the_spec_is_never_deployed() -> None:
    forged = canary_status(0).model_copy(update={"candidate": ref("evil", "e")})
    decision = decide(snap(forged, service(OLD)))
    assert decision.action == "verify" and decision.status.candidate == NEW and decision.status.phase == "Verifying"


@pytest.mark.parametrize("step", [1, 2, 99])
def test_a_step_no_analysis_earned_starts_the_canary_over(step: int) -> None:
    forged = canary_status(0).model_copy(update={"step_index": step})
    decision = decide(snap(forged, service(NEW, canary=50)))
    assert decision.status.phase == "Canary" and decision.status.step_index == 0 and decision.action is None
    assert decision.status.step_started_at == timestamp(NOW) and "not earned" in decision.status.message


def test_promotion_needs_the_analysis_of_this_candidate() -> None:
    other = canary_status(2).model_copy(
        update={"last_analysis": Analysis(version="v9", step_index=1, traffic_percent=50, time="", passed=True, reason="Passed")}
    )
    assert decide(snap(other, service(NEW, canary=None))).status.phase == "Canary"  # not promoted


def test_service_deleted_mid_canary_is_recreated_at_the_verified_version_first() -> None:
    status = canary_status(1, NOW - timedelta(seconds=30))
    decision = decide(snap(status, service(None)))
    assert decision.service == ServiceTarget(OLD, None) and decision.status.step_index == 1
    assert decision.status.step_started_at == status.step_started_at and decision.status.traffic_percent == 0  # timer runs on
    starting = decide(snap(status, service(OLD, ready=False)))
    assert starting.service == ServiceTarget(OLD, None)  # wait for it before canarying against it
    ready = decide(snap(status, service(OLD, ready=True)))
    assert ready.service == ServiceTarget(NEW, 50)
    never = decide(snap(canary_status(1, NOW - timedelta(seconds=601)), service(None)))
    assert never.status.phase == "RolledBack"  # a service that cannot come back times the step out


def test_zero_percent_that_left_the_candidate_all_traffic_serves_the_verified_version() -> None:
    """A recreated service has no earlier revision: canary 0 cannot move traffic back, a new revision must."""
    decision = decide(snap(rolled_back(), service(NEW, canary=0, ready=True, latest=100)))
    assert decision.service == ServiceTarget(OLD, None)


def test_with_nothing_verified_nothing_keeps_answering() -> None:
    """No verified version (the controller has already tried the service's stable annotations): an
    unverified or rejected version is not left serving, whatever the phase."""
    for status in (
        ModerationModelStatus(phase="Promoted", observed_generation=2, current=None, traffic_percent=100),
        ModerationModelStatus(phase="Failed", observed_generation=2, candidate=NEW, current=None),
    ):
        decision = decide(snap(status, service(NEW)))
        assert decision.service == ServiceTarget(None, None, delete=True) or decision.action == "verify"
    assert hold(ModerationModelStatus(phase="Failed", observed_generation=2), service(None)) is None


def test_promotion_waits_for_kserve_to_move_all_traffic() -> None:
    half = Observed(exists=True, storage_uri=NEW.storage_uri, canary_percent=None, ready=True, latest_percent=50, canary_url="u")
    decision = decide(snap(canary_status(2), half))
    assert decision.status.phase == "Canary" and decision.requeue_after


def test_a_future_step_start_restarts_the_timer() -> None:
    future = canary_status(0).model_copy(update={"step_started_at": "2099-01-01T00:00:00Z"})
    decision = decide(snap(future, service(NEW, canary=10)))
    assert decision.status.step_started_at == timestamp(NOW)


def test_a_damaged_phase_does_not_retry_a_rejected_version() -> None:
    rejected = analysed(snap(canary_status(0), service(NEW, canary=10)), analysis(False, failing=("pos-1",))).status
    damaged = rejected.model_copy(update={"phase": "Pending"})  # what parse_status makes of a phase it cannot read
    decision = decide(snap(damaged, service(NEW, canary=0), generation=2))
    assert decision.action is None and decision.status.phase == "RolledBack"


def test_an_unknown_suite_at_analysis_time_is_retried_not_a_verdict() -> None:
    early = analysed(snap(canary_status(0), service(NEW, canary=10)), analysis(False, reason="UnknownSuite"))
    assert early.status.phase == "Canary" and early.requeue_after


def test_a_change_elsewhere_in_the_spec_does_not_retry_a_rejected_version() -> None:
    rejected = analysed(snap(canary_status(0), service(NEW, canary=10)), analysis(False, failing=("pos-1",))).status
    more_replicas = spec_for(NEW).model_copy(update={"serving": spec_for(NEW).serving.model_copy(update={"max_replicas": 9})})
    again = decide(snap(rejected, service(NEW, canary=0), generation=3, spec=more_replicas))
    assert again.action is None and again.status.phase == "RolledBack" and again.status.observed_generation == 3
    assert again.service == ServiceTarget(OLD, None)  # the serving change applies to the verified version
    judged_otherwise = decide(snap(rejected, service(NEW, canary=0), generation=4, spec=spec_for(NEW, stepIntervalSeconds=5)))
    assert judged_otherwise.action == "verify"  # another rollout of it is a new try


@pytest.mark.parametrize("stamp", ["2026-11-26T11:58:00", "yesterday", ""])
def test_odd_timestamps_restart_the_timer_or_read_as_utc(stamp: str) -> None:
    decision = decide(snap(canary_status(0).model_copy(update={"step_started_at": stamp}), service(NEW, canary=10)))
    assert decision.status.phase == "Canary"
    if stamp.startswith("2026"):
        assert decision.action == "analyze"  # read as UTC: 120 s ago
    else:
        assert decision.status.step_started_at == timestamp(NOW)


def test_a_long_interval_keeps_the_whole_retry_window() -> None:
    spec = spec_for(NEW, stepIntervalSeconds=3600, timeoutSeconds=900)
    status = canary_status(0, NOW - timedelta(seconds=3601))
    early = analysed(snap(status, service(NEW, canary=10), spec=spec), analysis(False, reason="EndpointError"))
    assert early.status.phase == "Canary" and early.requeue_after


def test_an_endpoint_error_rollback_says_what_the_endpoint_did() -> None:
    failed = analysis(False, reason="EndpointError").model_copy(update={"suites": {"error": "serves model version 'v9'"}})
    late = analysed(snap(canary_status(0, NOW - timedelta(seconds=700)), service(NEW, canary=10)), failed)
    assert late.status.phase == "RolledBack" and "serves model version 'v9'" in late.status.message
