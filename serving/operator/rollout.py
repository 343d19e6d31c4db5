"""The rollout as a state machine: what to do next, given what the operator sees now.

Pure functions, no I/O: `decide` reads one snapshot (the ModerationModel's spec and status, the
InferenceService as KServe reports it, the time) and returns the next status, what the
InferenceService should be, and whether the controller must first run a check (`verify` the stored
bytes, `analyze` the canary live). The controller feeds a check's result back through `verified` or
`analysed`. Every piece of rollout state is in the status, so the same snapshot after an operator
restart gives the same decision: a rollout resumes where it was.

    new spec ─► Verifying ─ stored bytes ≠ manifest/gate ─► Failed (nothing deployed)
                   │ ok
                   ▼
                Canary step i: candidate at steps[i] % ─ not ready within timeout ─┐
                   │ ready, interval held: regression vectors on the canary URL    │
                   ├─ fail ────────────────────────────────────────────────────────┤
                   │ pass: next step                                               ▼
                   ▼ (100 %)                                    RolledBack: all traffic on the previous
                Promoted                                        verified version; not retried until
                                                                the spec changes (Failed when there is
                                                                no previous version to go back to)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from tiergate.moderation_model import (
    SETTLED_PHASES,
    Analysis,
    Condition,
    ModerationModelSpec,
    ModerationModelStatus,
    VersionRef,
)
from tiergate.serving.operator.inferenceservice import Observed

NOT_READY_POLL_SECONDS = 10.0
ANALYSIS_RETRY_SECONDS = 10.0
STORE_RETRY_SECONDS = 30.0
MAX_FAILING_IN_MESSAGE = 5


@dataclass(frozen=True)
class Snapshot:
    """One reconcile's view of the world."""

    generation: int
    spec: ModerationModelSpec | None  # None when the spec could not be parsed (`spec_error` says why)
    status: ModerationModelStatus
    isvc: Observed
    now: datetime
    spec_error: str = ""


@dataclass(frozen=True)
class ServiceTarget:
    """What the InferenceService should be: `version` at `canary_percent` (None: all traffic to it).

    `version` None keeps the model the service has and only sets the traffic; `delete` removes it.
    """

    version: VersionRef | None
    canary_percent: int | None
    delete: bool = False


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: ModerationModelStatus
    service: ServiceTarget | None  # None: leave the InferenceService as it is
    action: Literal["verify", "analyze"] | None = None
    requeue_after: float | None = None
    events: tuple[Event, ...] = field(default_factory=tuple)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds_since(stamp: str | None, now: datetime) -> float:
    if not stamp:
        return 0.0
    return (now - datetime.fromisoformat(stamp)).total_seconds()


def plan_steps(spec: ModerationModelSpec, status: ModerationModelStatus) -> list[int]:
    """The traffic steps of this rollout.

    With no verified version serving, KServe routes everything to the first revision: one step, 100 %,
    verified live before it counts as Promoted. When the spec asks for [100] over a serving version,
    the candidate first runs dark (0 %, reachable on its tag URL only) so it is still checked before
    it takes traffic.
    """
    if status.current is None:
        return [100]
    steps = list(spec.rollout.steps)
    return [0, *steps] if steps[0] == 100 else steps


def hold(status: ModerationModelStatus, isvc: Observed) -> ServiceTarget | None:
    """Traffic back on the last verified version; a candidate the service still runs gets none."""
    if status.current is None:
        return ServiceTarget(None, None, delete=True) if isvc.exists else None
    if not isvc.exists or isvc.storage_uri == status.current.storage_uri:
        return ServiceTarget(status.current, None)
    # canaryTrafficPercent 0: KServe sends everything to the previously rolled-out revision at once,
    # without waiting for a new revision of the old model to start.
    return ServiceTarget(None, 0)


def _conditions(status: ModerationModelStatus, generation: int, now: datetime, verified: bool | None) -> list[Condition]:
    """`Ready` follows the phase; `Verified` records the last check of the stored bytes."""
    previous = {condition.type: condition for condition in status.conditions}

    def condition(kind: str, state: Literal["True", "False", "Unknown"], reason: str, message: str) -> Condition:
        old = previous.get(kind)
        moved = old is None or old.status != state
        when = timestamp(now) if moved else old.last_transition_time  # type: ignore[union-attr]
        return Condition(
            type=kind, status=state, reason=reason, message=message, last_transition_time=when, observed_generation=generation
        )

    ready = condition("Ready", "True" if status.phase == "Promoted" else "False", status.phase, status.message)
    kept = [ready]
    if verified is not None:
        kept.append(condition("Verified", "True" if verified else "False", "Verified" if verified else "Mismatch", ""))
    elif "Verified" in previous:
        kept.append(previous["Verified"])
    return kept


def _with(snapshot: Snapshot, verified: bool | None = None, **changes: Any) -> ModerationModelStatus:
    status = snapshot.status.model_copy(update=changes)
    return status.model_copy(update={"conditions": _conditions(status, snapshot.generation, snapshot.now, verified)})


def decide(snapshot: Snapshot) -> Decision:
    status, isvc = snapshot.status, snapshot.isvc
    if snapshot.spec is None:
        if status.observed_generation == snapshot.generation and status.phase == "Failed":
            return Decision(status, hold(status, isvc))
        failed = _with(
            snapshot,
            phase="Failed",
            message=snapshot.spec_error,
            observed_generation=snapshot.generation,
            rejected_generation=snapshot.generation,
        )
        return Decision(failed, hold(failed, isvc), events=(Event("Warning", "InvalidSpec", snapshot.spec_error),))
    if status.observed_generation != snapshot.generation or status.phase == "Pending":
        return _start(snapshot, snapshot.spec)
    if status.phase == "Verifying":
        return Decision(status, hold(status, isvc), action="verify")
    if status.phase == "Canary":
        return _canary(snapshot, snapshot.spec)
    if status.phase == "Promoted" and status.current is not None:
        return Decision(status, ServiceTarget(status.current, None))
    return Decision(status, hold(status, isvc))  # RolledBack, Failed: settled until the spec changes


def _start(snapshot: Snapshot, spec: ModerationModelSpec) -> Decision:
    """A new spec: verify its version before anything is deployed (or confirm the version already serving)."""
    current = snapshot.status.current
    base: dict[str, Any] = {
        "observed_generation": snapshot.generation,
        "rejected_generation": None,
        "step_index": 0,
        "step_started_at": None,
    }
    if current is not None and current.same(spec.model) and current.gate_digest == spec.model.gate_digest:
        status = _with(
            snapshot, **base, phase="Promoted", candidate=None, traffic_percent=100, message=f"serving {current.version}"
        )
        return Decision(status, ServiceTarget(current, None))
    status = _with(
        snapshot,
        **base,
        phase="Verifying",
        candidate=VersionRef.of(spec.model),
        traffic_percent=0,
        rollout_started_at=timestamp(snapshot.now),
        message=f"verifying the stored copy of {spec.model.version} against its manifest and gate record",
    )
    event = Event("Normal", "RolloutStarted", f"{spec.model.version}: verifying {spec.model.storage_uri}")
    return Decision(status, hold(status, snapshot.isvc), action="verify", events=(event,))


def verified(snapshot: Snapshot, outcome: str, message: str) -> Decision:
    """After the stored bytes were checked: a mismatch fails the version before anything is deployed;
    an unreachable store is retried (a network blip must not reject a good version for good)."""
    assert snapshot.spec is not None and snapshot.status.candidate is not None
    candidate = snapshot.status.candidate
    if outcome == "unavailable":
        waiting = _with(snapshot, message=f"{candidate.version}: retrying verification: {message}")
        return Decision(waiting, hold(waiting, snapshot.isvc), requeue_after=STORE_RETRY_SECONDS)
    if outcome != "verified":
        status = _with(
            snapshot,
            verified=False,
            phase="Failed",
            message=f"{candidate.version} not deployed: {message}",
            rejected_generation=snapshot.generation,
        )
        return Decision(status, hold(status, snapshot.isvc), events=(Event("Warning", "VerificationFailed", status.message),))
    steps = plan_steps(snapshot.spec, snapshot.status)
    status = _with(
        snapshot,
        verified=True,
        phase="Canary",
        step_index=0,
        step_started_at=timestamp(snapshot.now),
        message=f"{candidate.version} verified; deploying at {steps[0]} % of traffic",
    )
    event = Event("Normal", "Verified", f"{candidate.version}: stored copy matches digest {candidate.digest[:12]} and its gate")
    decision = _canary(replace(snapshot, status=status), snapshot.spec)
    return replace(decision, events=(event, *decision.events))


def _canary(snapshot: Snapshot, spec: ModerationModelSpec) -> Decision:
    """Hold the candidate at its step until its revision is ready and the interval passed, then analyse it."""
    status, isvc = snapshot.status, snapshot.isvc
    assert status.candidate is not None
    steps = plan_steps(spec, status)
    index = min(status.step_index, len(steps) - 1)
    percent = steps[index]
    target = ServiceTarget(status.candidate, None if percent == 100 else percent)
    at_step = isvc.exists and isvc.storage_uri == status.candidate.storage_uri and isvc.canary_percent == target.canary_percent
    elapsed = _seconds_since(status.step_started_at, snapshot.now)
    if not (at_step and isvc.ready):
        if elapsed > spec.rollout.timeout_seconds:
            detail = f": {isvc.message}" if isvc.message else ""
            reason = f"the canary revision was not ready {spec.rollout.timeout_seconds} s after step {index}{detail}"
            return _reject(snapshot, "CanaryNotReady", reason)
        wait = min(NOT_READY_POLL_SECONDS, spec.rollout.timeout_seconds - elapsed + 1)
        waiting = _with(snapshot, traffic_percent=(isvc.latest_percent or 0) if at_step else 0)
        return Decision(waiting, target, requeue_after=wait)
    status = _with(snapshot, traffic_percent=percent, message=f"{status.candidate.version} at {percent} % of traffic")
    if percent == 100 and status.current is not None:
        return _promote(replace(snapshot, status=status))
    remaining = spec.rollout.step_interval_seconds - elapsed
    if remaining > 0:
        return Decision(status, target, requeue_after=remaining)
    return Decision(status, target, action="analyze")


def analysed(snapshot: Snapshot, analysis: Analysis) -> Decision:
    """After the regression vectors ran on the canary: next step, Promoted, a retry, or a rollback."""
    assert snapshot.spec is not None and snapshot.status.candidate is not None
    spec, status = snapshot.spec, snapshot.status.model_copy(update={"last_analysis": analysis})
    snapshot = replace(snapshot, status=status)
    if not analysis.passed:
        elapsed = _seconds_since(status.step_started_at, snapshot.now)
        if analysis.reason == "EndpointError" and elapsed <= spec.rollout.timeout_seconds:
            waiting = _with(snapshot, message=f"canary unreachable, retrying: {analysis.url}")
            return Decision(
                waiting, ServiceTarget(status.candidate, _step_canary(spec, status)), requeue_after=ANALYSIS_RETRY_SECONDS
            )
        failing = ", ".join(vector.id for vector in analysis.failing_vectors[:MAX_FAILING_IN_MESSAGE])
        more = len(analysis.failing_vectors) - MAX_FAILING_IN_MESSAGE
        detail = f"{failing}{f' and {more} more' if more > 0 else ''}" if failing else analysis.reason
        return _reject(snapshot, "AnalysisFailed", f"live regression failed at {analysis.traffic_percent} %: {detail}")
    assert status.candidate is not None
    steps = plan_steps(spec, status)
    if status.step_index + 1 >= len(steps):
        return _promote(snapshot)  # the first version: its one step (100 %) passed live
    following = steps[status.step_index + 1]
    advanced = _with(
        snapshot,
        step_index=status.step_index + 1,
        step_started_at=timestamp(snapshot.now),
        message=f"{status.candidate.version} passed at {steps[status.step_index]} %; moving to {following} %",
    )
    event = Event("Normal", "StepPassed", f"{status.candidate.version}: {_summary(analysis)} at {analysis.traffic_percent} %")
    decision = _canary(replace(snapshot, status=advanced), spec)
    return replace(decision, events=(event, *decision.events))


def _step_canary(spec: ModerationModelSpec, status: ModerationModelStatus) -> int | None:
    percent = plan_steps(spec, status)[min(status.step_index, len(plan_steps(spec, status)) - 1)]
    return None if percent == 100 else percent


def _summary(analysis: Analysis) -> str:
    return ", ".join(f"{name} {result}" for name, result in sorted(analysis.suites.items())) or analysis.reason


def _promote(snapshot: Snapshot) -> Decision:
    status = snapshot.status
    assert status.candidate is not None
    previous = status.current if status.current and status.current.storage_uri != status.candidate.storage_uri else None
    promoted = _with(
        snapshot,
        phase="Promoted",
        current=status.candidate,
        previous=previous or status.previous,
        candidate=None,
        traffic_percent=100,
        message=f"{status.candidate.version} serves all traffic",
    )
    event = Event("Normal", "Promoted", f"{status.candidate.version} promoted to 100 % of traffic")
    return Decision(promoted, ServiceTarget(status.candidate, None), events=(event,))


def _reject(snapshot: Snapshot, reason: str, message: str) -> Decision:
    """All traffic back on the last verified version (RolledBack), or Failed when there is none."""
    status = snapshot.status
    assert status.candidate is not None
    phase = "RolledBack" if status.current is not None else "Failed"
    where = f"; all traffic on {status.current.version}" if status.current is not None else "; nothing serves"
    rejected = _with(
        snapshot,
        phase=phase,
        traffic_percent=0,
        rejected_generation=snapshot.generation,
        message=f"{status.candidate.version} {'rolled back' if status.current else 'failed'}: {message}{where}",
    )
    return Decision(rejected, hold(rejected, snapshot.isvc), events=(Event("Warning", reason, rejected.message),))


def is_settled(status: ModerationModelStatus, generation: int) -> bool:
    return status.phase in SETTLED_PHASES and status.observed_generation == generation
