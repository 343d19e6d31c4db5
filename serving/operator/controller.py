"""The reconcile loop: level-triggered, idempotent, one ModerationModel at a time.

Watches on ModerationModels and the InferenceServices they own put keys on a work queue; a periodic
resync puts every model there too, so a missed event only delays a step. `reconcile` reads the model
and its service fresh, asks `rollout.decide` what to do, runs the check it asks for (verify the stored
bytes, analyse the canary), writes the status — guarded by the resourceVersion it read, so a spec
changed meanwhile is a conflict and a fresh decision, never an overwritten spec — and only then moves
the InferenceService, so a crash between the two is repaired by the next reconcile from the status.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from kubernetes.client.exceptions import ApiException

from tiergate.errors import ConfigError
from tiergate.gate import GatePolicy
from tiergate.moderation_model import (
    FINALIZER,
    KIND,
    ModerationModelSpec,
    ModerationModelStatus,
    VersionRef,
    parse_spec,
    parse_status,
)
from tiergate.profiles import PublishSettings
from tiergate.regression import Suite
from tiergate.serving.operator import rollout
from tiergate.serving.operator.analysis import analyze, unknown_suites
from tiergate.serving.operator.inferenceservice import (
    STABLE_DIGEST_ANNOTATION,
    STABLE_GATE_ANNOTATION,
    STABLE_URI_ANNOTATION,
    STABLE_VERSION_ANNOTATION,
    cluster_local,
    desired_body,
    is_owned_by,
    merge_patch,
    observe,
    stable_annotations,
)
from tiergate.serving.operator.kube import MODELS, SERVICES, Conflict, Kind, Kube
from tiergate.serving.operator.verification import verify_model, verify_version
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)

CONFLICT_RETRY_SECONDS = 1.0
ERROR_RETRY_SECONDS = 15.0
FOREIGN_SERVICE_RETRY_SECONDS = 30.0
MAX_CHECKS_PER_RECONCILE = 4


@dataclass(frozen=True)
class Settings:
    namespace: str | None  # None: every namespace
    store: PublishSettings
    policy: GatePolicy
    taxonomy: Taxonomy
    suites: Sequence[Suite]
    identity: str
    analysis_address: Literal["cluster-local", "status"] = "cluster-local"
    resync_seconds: float = 60.0
    watch_timeout_seconds: int = 300


def _deploy_key(version: VersionRef) -> tuple[str, str, str]:
    return (version.storage_uri, version.digest, version.gate_digest)


def recover_current(status: ModerationModelStatus, isvc: dict[str, Any] | None) -> ModerationModelStatus:
    """A status with no verified version while the owned service records one (its stable annotations,
    written at every promotion): the status lost its memory (emptied, damaged), so take it back from
    there, never from what the service happens to run (mid-canary that is the candidate). The version
    is re-verified before the service is ever moved to it (`Controller._deployable_now`)."""
    if status.current is not None or isvc is None:
        return status
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    fields: dict[str, Any] = {
        "version": annotations.get(STABLE_VERSION_ANNOTATION),
        "storage_uri": annotations.get(STABLE_URI_ANNOTATION),
        "digest": annotations.get(STABLE_DIGEST_ANNOTATION),
        "gate_digest": annotations.get(STABLE_GATE_ANNOTATION) or "",
    }
    if not all(isinstance(value, str) for value in fields.values()) or not all(list(fields.values())[:3]):
        return status
    return status.model_copy(update={"current": VersionRef.model_validate(fields)})


class WorkQueue:
    """Keys due at a time; a key queued twice runs once, at the earlier time."""

    def __init__(self) -> None:
        self._due: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []
        self._ready = threading.Condition()

    def add(self, key: tuple[str, str], delay_s: float = 0.0) -> None:
        due = time.monotonic() + max(delay_s, 0.0)
        with self._ready:
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, key))
            self._ready.notify()

    def get(self, stop: threading.Event, poll_s: float = 0.5) -> tuple[str, str] | None:
        """The next due key, or None when `stop` is set."""
        with self._ready:
            while not stop.is_set():
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded by an earlier add
                if self._heap and self._heap[0][0] <= time.monotonic():
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                wait = self._heap[0][0] - time.monotonic() if self._heap else poll_s
                self._ready.wait(min(max(wait, 0.01), poll_s))
        return None


class Controller:
    def __init__(self, kube: Kube, settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.kube, self.settings, self.clock = kube, settings, clock
        self.queue = WorkQueue()
        self.synced = threading.Event()  # the first full list was queued
        self._deployable: set[tuple[str, str, str]] = set()  # versions verified by this process
        self._refusals: set[tuple[str, str, str]] = set()  # RefusedToDeploy events already recorded
        self.last_loop = time.monotonic()

    # --- one key ------------------------------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> float | None:
        """Bring one ModerationModel a step closer to its spec; returns when to look again (None: on events)."""
        model = self.kube.get(MODELS, namespace, name)
        if model is None:
            return None
        metadata = model["metadata"]
        if metadata.get("deletionTimestamp"):
            self._finalize(model)
            return None
        if FINALIZER not in (metadata.get("finalizers") or []):
            model = self.kube.set_finalizers(model, [*(metadata.get("finalizers") or []), FINALIZER])
        isvc = self.kube.get(SERVICES, namespace, name)
        if isvc is not None and not is_owned_by(isvc, model):
            return self._foreign_service(model)
        spec, error = self._spec(model)
        observed = observe(isvc)
        status, damage = parse_status(model)
        events: list[rollout.Event] = []
        if damage:
            message = f"the status was unreadable ({damage[:200]}); starting over from what serves"
            events.append(rollout.Event("Warning", "StatusReset", message))
            log.warning("%s: %s", name, message)
        recovered = recover_current(status, isvc)
        if recovered is not status:
            message = f"the status names no verified version; the service records {recovered.current.version}"  # type: ignore[union-attr]
            events.append(rollout.Event("Warning", "StatusRecovered", message))
            status = recovered
        snapshot = rollout.Snapshot(
            generation=int(model["metadata"].get("generation") or 1),
            spec=spec,
            status=status,
            isvc=observed,
            now=self.clock(),
            spec_error=error,
        )
        decision, decided = self._decide(snapshot, model)
        events += decided
        written = decision.status.wire()
        if written != (model.get("status") or {}):
            model = self.kube.write_status(model, written)
        for event in events:  # they tell the transition just recorded, whatever happens to the service next
            self.kube.event(model, event.type, event.reason, event.message, self.settings.identity)
        self._apply(model, spec, isvc, decision.service, decision.status.current)
        return decision.requeue_after

    def _spec(self, model: dict[str, Any]) -> tuple[ModerationModelSpec | None, str]:
        try:
            return parse_spec(model), ""
        except ConfigError as error:
            return None, str(error)

    def _decide(self, snapshot: rollout.Snapshot, model: dict[str, Any]) -> tuple[rollout.Decision, list[rollout.Event]]:
        """`decide`, then the checks it asks for, until a decision needs none (verify then deploy, in one pass)."""
        decision = rollout.decide(snapshot)
        events = list(decision.events)
        for _ in range(MAX_CHECKS_PER_RECONCILE):
            if decision.action is None or snapshot.spec is None:
                break
            current = replace(snapshot, status=decision.status, now=self.clock())
            if decision.action == "verify":
                outcome, message = self._verify(snapshot.spec)
                log.info("%s: verification %s: %s", model["metadata"]["name"], outcome, message)
                decision = rollout.verified(current, outcome, message)
            else:
                decision = rollout.analysed(current, self._analyze(current, snapshot.spec, model))
            events += decision.events
        return decision, events

    def _verify(self, spec: ModerationModelSpec) -> tuple[str, str]:
        """The stored copy (trust chain), and that the analysis can run as asked, before anything deploys."""
        missing = unknown_suites(spec.rollout.analysis, self.settings.suites)
        if missing:
            known = ", ".join(sorted(suite.suite for suite in self.settings.suites))
            return "refused", f"rollout.analysis names unknown suites {', '.join(missing)} (known: {known})"
        outcome, message = verify_model(spec.model, self.settings.store, self.settings.policy)
        if outcome == "verified":
            self._deployable.add(_deploy_key(VersionRef.of(spec.model)))
        return outcome, message

    def _analyze(self, snapshot: rollout.Snapshot, spec: ModerationModelSpec, model: dict[str, Any]) -> Any:
        status = snapshot.status
        assert status.candidate is not None
        url = snapshot.isvc.canary_url or ""
        if url and self.settings.analysis_address == "cluster-local":
            url = cluster_local(url, model["metadata"]["namespace"])
        steps = rollout.plan_steps(spec, status)
        index = min(status.step_index, len(steps) - 1)
        log.info("%s: analysing %s at %s %% on %s", model["metadata"]["name"], status.candidate.version, steps[index], url)
        return analyze(
            url, spec.model.name, status.candidate.version, spec.rollout.analysis, self.settings.suites,
            self.settings.taxonomy, index, steps[index], self.clock(), deadline_s=spec.rollout.timeout_seconds,
        )  # fmt: skip

    def _apply(
        self,
        model: dict[str, Any],
        spec: ModerationModelSpec | None,
        isvc: dict[str, Any] | None,
        target: rollout.ServiceTarget | None,
        stable: VersionRef | None,
    ) -> None:
        namespace, name = model["metadata"]["namespace"], model["metadata"]["name"]
        if target is None:
            return
        if target.delete:
            if isvc is not None:
                log.info("%s: deleting its InferenceService (nothing verified to serve)", name)
                self.kube.delete(SERVICES, namespace, name)
            return
        if target.version is None:  # keep the model, move the traffic
            if isvc is not None and observe(isvc).canary_percent != target.canary_percent:
                patch: dict[str, Any] = {"spec": {"predictor": {"canaryTrafficPercent": target.canary_percent}}}
                if stable is not None:
                    patch["metadata"] = {"annotations": stable_annotations(stable)}
                self.kube.patch(SERVICES, namespace, name, patch)
            return
        if spec is None:
            return  # no valid spec to build a service from: leave the one that serves alone
        if target.canary_percent is None and stable is not None:
            # all traffic goes to this version: it is the fallback from now on, recorded in the same patch
            # (an annotation-only change later would make KServe roll out one more identical revision)
            stable = target.version
        serving = observe(isvc).storage_uri
        if target.version.storage_uri != serving:
            outcome, reason = self._deployable_now(target.version)
            if outcome != "verified":
                self._refused(model, target.version, outcome, reason)
                return
        body = desired_body(model, spec, target.version, target.canary_percent, stable)
        if isvc is None:
            log.info("%s: creating its InferenceService at %s", name, target.version.version)
            self.kube.create(SERVICES, namespace, body)
            return
        changes = merge_patch(isvc, body)
        if changes:
            log.info("%s: patching its InferenceService: %s", name, sorted(changes.get("spec", {}).get("predictor", {})))
            self.kube.patch(SERVICES, namespace, name, changes)

    def _deployable_now(self, version: VersionRef) -> tuple[str, str]:
        """Every version the service is moved to is verified first, whatever the status says (a forged or
        recovered `current` must not route unverified bytes). Cached per process."""
        key = _deploy_key(version)
        if key in self._deployable:
            return "verified", ""
        outcome, message = verify_version(version, self.settings.store, self.settings.policy)
        if outcome == "verified":
            self._deployable.add(key)
        return outcome, message

    def _refused(self, model: dict[str, Any], version: VersionRef, outcome: str, reason: str) -> None:
        """One event per version and reason, not one per reconcile; an unreachable store is said as such."""
        what = "the model store is unreachable, retrying" if outcome == "unavailable" else "its stored copy does not verify"
        message = f"not deploying {version.version} ({version.storage_uri}): {what}: {reason}"[:1000]
        log.warning("%s: %s", model["metadata"]["name"], message)
        key = (model["metadata"].get("uid", ""), version.storage_uri, outcome)
        if key not in self._refusals:
            self._refusals.add(key)
            self.kube.event(model, "Warning", "RefusedToDeploy", message, self.settings.identity)

    def _foreign_service(self, model: dict[str, Any]) -> float:
        """An InferenceService of that name that this model does not own is never taken over: wait and say so."""
        metadata = model["metadata"]
        message = (
            f"InferenceService {metadata['namespace']}/{metadata['name']} exists and is not owned by this {KIND}; "
            "delete it (it was rendered by an older chart?) and the rollout starts"
        )
        status, _ = parse_status(model)
        if status.message != message:
            waiting = status.model_copy(update={"phase": "Pending", "message": message})
            self.kube.write_status(model, waiting.wire())
            self.kube.event(model, "Warning", "ServiceNotOwned", message, self.settings.identity)
        return FOREIGN_SERVICE_RETRY_SECONDS

    def _finalize(self, model: dict[str, Any]) -> None:
        """Deleting a ModerationModel removes its InferenceService, then lets the model go."""
        metadata = model["metadata"]
        finalizers = list(metadata.get("finalizers") or [])
        if FINALIZER not in finalizers:
            return
        isvc = self.kube.get(SERVICES, metadata["namespace"], metadata["name"])
        if isvc is not None and is_owned_by(isvc, model):
            self.kube.delete(SERVICES, metadata["namespace"], metadata["name"])
        self.kube.set_finalizers(model, [item for item in finalizers if item != FINALIZER])
        log.info("%s: finalized (its InferenceService is deleted)", metadata["name"])

    # --- the loop -----------------------------------------------------------------------------------------
    def process(self, stop: threading.Event, leading: Callable[[], bool] = lambda: True) -> None:
        """Work keys off the queue until `stop`; while not leading, keys wait (the leader does them)."""
        while not stop.is_set():
            self.last_loop = time.monotonic()
            key = self.queue.get(stop)
            if key is None:
                return
            if not leading():
                self.queue.add(key, 1.0)
                continue
            try:
                requeue = self.reconcile(*key)
            except Conflict:
                requeue = CONFLICT_RETRY_SECONDS
            except (ApiException, OSError) as error:
                log.warning("%s/%s: %s; retrying in %.0f s", *key, getattr(error, "reason", error), ERROR_RETRY_SECONDS)
                requeue = ERROR_RETRY_SECONDS
            except Exception:  # one odd object must not stop the operator for every other model
                log.exception("%s/%s: unexpected error; retrying in %.0f s", *key, ERROR_RETRY_SECONDS)
                requeue = ERROR_RETRY_SECONDS
            if requeue is not None:
                self.queue.add(key, requeue)

    def watch(self, kind: Kind, stop: threading.Event) -> None:
        """List, queue every model it concerns, then follow the watch; relist on expiry or error."""
        while not stop.is_set():
            try:
                items, version = self.kube.list_objects(kind, self.settings.namespace)
                for item in items:
                    self._enqueue(kind, item)
                if kind == MODELS:
                    self.synced.set()
                for event in self.kube.watch(kind, self.settings.namespace, version, self.settings.watch_timeout_seconds):
                    if stop.is_set():
                        return
                    if event.get("type") == "ERROR":
                        break  # 410 Gone: the resourceVersion expired; relist
                    self._enqueue(kind, event.get("object") or {})
            except Exception as error:  # urllib3's connection errors included: a blip must not end the watch
                log.warning("watch %s: %s; relisting", kind.plural, getattr(error, "reason", error))
                stop.wait(2.0)

    def resync(self, stop: threading.Event) -> None:
        """Every model, every `resync_seconds`: a lost event costs a delay, never a stuck rollout."""
        while not stop.wait(self.settings.resync_seconds):
            self.resync_once()

    def resync_once(self) -> None:
        try:
            items, _ = self.kube.list_objects(MODELS, self.settings.namespace)
        except Exception as error:  # retried at the next resync
            log.warning("resync: %s", getattr(error, "reason", error))
            return
        for item in items:
            self._enqueue(MODELS, item)

    def _enqueue(self, kind: Kind, item: dict[str, Any]) -> None:
        metadata = item.get("metadata") or {}
        namespace = metadata.get("namespace")
        if kind == MODELS:
            name = metadata.get("name")
        else:
            owners = [ref for ref in metadata.get("ownerReferences") or [] if ref.get("kind") == KIND]
            name = owners[0].get("name") if owners else None
        if namespace and name:
            self.queue.add((namespace, name))
