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

from tiergate.hashing import sha256_json
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
MAX_FUTURE_SECONDS = 60.0  # a step that "starts" later than this is a bad timestamp (or a skewed clock)
# What an analysis that did not judge the model says: retried until the step times out, never a verdict.
RETRIED_REASONS = frozenset({"EndpointError", "UnknownSuite"})
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


def parse_time(stamp: str | None) -> datetime | None:
    """A status timestamp; None when absent or unreadable (a hand edit): the caller restarts its timer."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _seconds_since(stamp: str | None, now: datetime) -> float:
    moment = parse_time(stamp)
    return 0.0 if moment is None else (now - moment).total_seconds()


def _usable_start(stamp: str | None, now: datetime) -> bool:
    """A step start the timers can count from: readable, and not in the future (a forged or skewed stamp
    would otherwise hold a canary forever, never analysed and never timed out)."""
    moment = parse_time(stamp)
    return moment is not None and (moment - now).total_seconds() <= MAX_FUTURE_SECONDS


def rollout_key(spec: ModerationModelSpec) -> str:
    """What a rejection is about: the version and how it was judged. Another replica count is not a new try."""
    return sha256_json({"model": spec.model.wire(), "rollout": spec.rollout.wire()})


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
    """Traffic back on the last verified version; a candidate the service still runs gets none.

    With no verified version there is nothing to fall back to, and nothing unverified keeps answering:
    the service goes. (A status that merely lost its memory does not get here: the controller reads the
    verified version back from the service's stable annotations first, `recover_current`.)
    """
    if status.current is None:
        return ServiceTarget(None, None, delete=True) if isvc.exists else None
    if not isvc.exists or isvc.storage_uri == status.current.storage_uri:
        return ServiceTarget(status.current, None)
    if isvc.canary_percent == 0 and isvc.ready and (isvc.latest_percent or 0) > 0:
        # 0 % left the candidate with traffic: the service has no earlier revision to fall back to
        # (it was recreated); serve the verified version as a new revision instead.
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
    spec = snapshot.spec
    if status.observed_generation != snapshot.generation or status.phase == "Pending":
        return _start(snapshot, spec)
    in_flight = status.phase in ("Verifying", "Canary")
    if in_flight and not _is_spec_model(status.candidate, spec):
        return _start(snapshot, spec)  # the status names another candidate than the spec: never deploy that
    if status.phase == "Verifying":
        return Decision(status, hold(status, isvc), action="verify")
    if status.phase == "Canary":
        return _canary(snapshot, spec)
    if status.phase == "Promoted":
        if status.current is None:
            return _start(snapshot, spec)  # Promoted with nothing serving: the status lost its memory
        return Decision(status, ServiceTarget(status.current, None))
    return Decision(status, hold(status, isvc))  # RolledBack, Failed: settled until the spec changes


def _is_spec_model(version: VersionRef | None, spec: ModerationModelSpec) -> bool:
    return version is not None and version.same(spec.model) and version.gate_digest == spec.model.gate_digest


def _passed_before(status: ModerationModelStatus, steps: list[int], index: int) -> bool:
    """Step `index` is earned only by a passing analysis of this candidate at the step before it."""
    if index == 0:
        return True
    analysis, candidate = status.last_analysis, status.candidate
    return (
        analysis is not None
        and candidate is not None
        and analysis.passed
        and analysis.version == candidate.version
        and analysis.step_index == index - 1
        and analysis.traffic_percent == steps[index - 1]
    )


def _start(snapshot: Snapshot, spec: ModerationModelSpec) -> Decision:
    """A new spec: verify its version before anything is deployed (or confirm the version already serving)."""
    current, status = snapshot.status.current, snapshot.status
    if status.rejected_key == rollout_key(spec):
        # the same version judged the same way was rejected: a change elsewhere in the spec (or a damaged
        # phase) is no retry. A serving change applies to the verified version, as a new revision of it.
        phase = status.phase if status.phase in ("RolledBack", "Failed") else ("RolledBack" if current else "Failed")
        settled = _with(snapshot, observed_generation=snapshot.generation, phase=phase, traffic_percent=0)
        return Decision(settled, ServiceTarget(current, None) if current is not None else hold(settled, snapshot.isvc))
    base: dict[str, Any] = {
        "observed_generation": snapshot.generation,
        "rejected_generation": None,
        "rejected_key": None,
        "step_index": 0,
        "step_started_at": None,
    }
    if current is not None and _is_spec_model(current, spec):
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
            rejected_key=rollout_key(snapshot.spec),
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
    candidate, current = status.candidate, status.current
    assert candidate is not None
    steps = plan_steps(spec, status)
    index = status.step_index
    if index >= len(steps) or not _passed_before(status, steps, index):
        # a step the analyses did not earn (a hand-edited status): start the canary over at its first step
        return _restart_step(snapshot, 0, f"step {index} was not earned by a passing analysis; back to {steps[0]} %")
    if not _usable_start(status.step_started_at, snapshot.now):
        return _restart_step(snapshot, index, f"{candidate.version} at step {index}: timer restarted")
    percent = steps[index]
    target = ServiceTarget(candidate, _step_canary(spec, status))
    if current is not None and isvc.storage_uri not in (candidate.storage_uri, current.storage_uri):
        # the service is gone (or serves neither): bring back the verified version first, so the canary
        # has a previous revision to share traffic with (a new service would give the candidate it all).
        # The step's timer runs on: a service that cannot come back times the step out.
        target = ServiceTarget(current, None)
    if current is not None and isvc.storage_uri == current.storage_uri and not isvc.ready:
        target = ServiceTarget(current, None)  # wait for the verified revision before canarying against it
    at_step = isvc.exists and isvc.storage_uri == candidate.storage_uri and isvc.canary_percent == target.canary_percent
    elapsed = _seconds_since(status.step_started_at, snapshot.now)
    if not (at_step and isvc.ready):
        if elapsed > spec.rollout.timeout_seconds:
            detail = f": {isvc.message}" if isvc.message else ""
            reason = f"the canary revision was not ready {spec.rollout.timeout_seconds} s after step {index}{detail}"
            return _reject(snapshot, "CanaryNotReady", reason)
        wait = min(NOT_READY_POLL_SECONDS, spec.rollout.timeout_seconds - elapsed + 1)
        waiting = _with(snapshot, traffic_percent=(isvc.latest_percent or 0) if at_step else 0)
        return Decision(waiting, target, requeue_after=wait)
    observed = isvc.latest_percent if isvc.latest_percent is not None else percent
    status = _with(snapshot, traffic_percent=observed, message=f"{candidate.version} at {percent} % of traffic")
    if percent == 100 and current is not None:
        if isvc.latest_percent not in (None, 100):  # KServe has not moved all traffic yet
            return Decision(status, target, requeue_after=NOT_READY_POLL_SECONDS)
        return _promote(replace(snapshot, status=status))
    remaining = spec.rollout.step_interval_seconds - elapsed
    if remaining > 0:
        return Decision(status, target, requeue_after=remaining)
    return Decision(status, target, action="analyze")


def _restart_step(snapshot: Snapshot, index: int, message: str) -> Decision:
    """Begin step `index` again now (timer and all), the candidate without traffic meanwhile."""
    status = _with(snapshot, step_index=index, step_started_at=timestamp(snapshot.now), traffic_percent=0, message=message)
    return Decision(status, hold(status, snapshot.isvc), requeue_after=1.0)


def analysed(snapshot: Snapshot, analysis: Analysis) -> Decision:
    """After the regression vectors ran on the canary: next step, Promoted, a retry, or a rollback."""
    assert snapshot.spec is not None and snapshot.status.candidate is not None
    spec, status = snapshot.spec, snapshot.status.model_copy(update={"last_analysis": analysis})
    snapshot = replace(snapshot, status=status)
    if not analysis.passed:
        elapsed = _seconds_since(status.step_started_at, snapshot.now)
        error = analysis.suites.get("error", "")
        window = spec.rollout.step_interval_seconds + spec.rollout.timeout_seconds  # opens when the analysis was due
        if analysis.reason in RETRIED_REASONS and elapsed <= window:
            waiting = _with(snapshot, message=f"canary not answering as expected, retrying: {error or analysis.url}")
            return Decision(
                waiting, ServiceTarget(status.candidate, _step_canary(spec, status)), requeue_after=ANALYSIS_RETRY_SECONDS
            )
        failing = ", ".join(vector.id for vector in analysis.failing_vectors[:MAX_FAILING_IN_MESSAGE])
        more = len(analysis.failing_vectors) - MAX_FAILING_IN_MESSAGE
        detail = f"{failing}{f' and {more} more' if more > 0 else ''}" if failing else f"{analysis.reason} {error}".strip()
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
    """The canaryTrafficPercent of the current step (None at 100 %: all traffic, the field removed)."""
    steps = plan_steps(spec, status)
    percent = steps[min(status.step_index, len(steps) - 1)]
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
    assert snapshot.spec is not None
    rejected = _with(
        snapshot,
        phase=phase,
        traffic_percent=0,
        rejected_generation=snapshot.generation,
        rejected_key=rollout_key(snapshot.spec),
        message=f"{status.candidate.version} {'rolled back' if status.current else 'failed'}: {message}{where}",
    )
    return Decision(rejected, hold(rejected, snapshot.isvc), events=(Event("Warning", reason, rejected.message),))


def is_settled(status: ModerationModelStatus, generation: int) -> bool:
    return status.phase in SETTLED_PHASES and status.observed_generation == generation
