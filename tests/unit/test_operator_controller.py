"""The reconcile loop step by step (no threads, a hand-moved clock) against the fake API server.

The stored versions are small repositories with real, passing gate records (tests/trust_helpers.py)
published to a `file://` store by the real publish step; the canary is the fake Triton HTTP server
(version `fake-1`; it flags a category only when the text names it, so the `positives` suite fails
on it). The slow test next door runs the same loop with threads and real Tritons.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.fake_kserve import FakeKServe
from tests.fake_kube import FakeKube
from tests.fake_triton import FakeTriton
from tests.operator_helpers import operator_settings
from tests.trust_helpers import make_repository
from tiergate.k8s_validation import validate_manifest
from tiergate.moderation_model import GROUP, PLURAL, VERSION
from tiergate.profiles import PublishSettings
from tiergate.serving.operator.controller import Controller, WorkQueue
from tiergate.serving.operator.kube import MODELS, SERVICES, Conflict, Kube
from tiergate.serving.operator.leader import LeaderElector
from tiergate.taxonomy import Taxonomy

NS, NAME = "ml", "tiergate"
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")


@dataclass
class Stored:
    store: PublishSettings
    models: dict[str, dict[str, str]]  # version -> spec.model


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    from tiergate.components.publish.step import publish_repository

    root = tmp_path_factory.mktemp("store")
    store = PublishSettings(store=f"file://{root}/store", pvc_mount_root=str(root / "pvc"))
    models = {}
    for version in ("fake-1", "fake-2"):
        repository = make_repository(root / version, version, payload=version)
        published = publish_repository(repository, store)
        manifest = json.loads((repository / "repository.json").read_text())
        models[version] = {
            "name": "tiergate",
            "version": version,
            "storageUri": published["uri"],
            "digest": published["digest"],
            "gateDigest": manifest["gate_digest"],
        }
    never = dict(models["fake-2"], version="fake-3")  # a version promote never published
    models["fake-3"] = {**never, "storageUri": never["storageUri"].replace("/fake-2/", "/fake-3/")}
    return Stored(store, models)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def mono(self) -> float:
        """A monotonic clock that moves with `advance` (leader election measures expiry on it)."""
        return (self.now - datetime(2026, 11, 26, tzinfo=UTC)).total_seconds()


@dataclass
class Rig:
    kube: FakeKube
    kserve: FakeKServe
    controller: Controller
    clock: Clock
    canary: FakeTriton  # serves fake-1; fake-2 has its own

    def step(self, times: int = 1) -> None:
        for _ in range(times):
            self.controller.reconcile(NS, NAME)
            self.kserve.sync()

    def status(self) -> dict[str, Any]:
        return (self.kube.get(GROUP, VERSION, PLURAL, NS, NAME) or {}).get("status") or {}

    def isvc(self) -> dict[str, Any] | None:
        return self.kube.get(*ISVC, NS, NAME)

    def reasons(self) -> list[str]:
        return [event["reason"] for event in self.kube.events(NS)]


def model_resource(model: dict[str, str], **rollout: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModerationModel",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "model": model,
            "serving": {"gpu": 0},
            "rollout": {
                "steps": [20, 100],
                "stepIntervalSeconds": 30,
                "timeoutSeconds": 120,
                "analysis": {"suites": [{"name": "positives", "minPassRate": 0.0}]},
                **rollout,
            },
        },
    }


@pytest.fixture
def rig(stored: Stored, taxonomy: Taxonomy) -> Iterator[Rig]:
    with FakeKube() as kube, FakeTriton(taxonomy.labels) as canary, FakeTriton(taxonomy.labels, model_version="fake-2") as second:
        backends = {stored.models["fake-1"]["storageUri"]: canary.url, stored.models["fake-2"]["storageUri"]: second.url}
        kserve = FakeKServe(kube, backends)
        clock = Clock()
        settings = operator_settings(NS, stored.store, taxonomy, "unit")
        yield Rig(kube, kserve, Controller(Kube(kube.api_client()), settings, clock), clock, canary)


def promote_first(rig: Rig, stored: Stored) -> None:
    rig.kube.put(model_resource(stored.models["fake-1"]))
    rig.step(2)  # verify + create; the revision gets ready
    rig.clock.advance(31)
    rig.step()  # analysed at 100 %: promoted
    assert rig.status()["phase"] == "Promoted", rig.status()


def test_first_version_is_verified_deployed_analysed_and_promoted(rig: Rig, stored: Stored) -> None:
    rig.kube.put(model_resource(stored.models["fake-1"]))
    rig.step()
    status = rig.status()
    assert status["phase"] == "Canary" and status["candidate"]["version"] == "fake-1"
    isvc = rig.isvc()
    assert isvc is not None
    validate_manifest(isvc)  # what the operator creates is a valid InferenceService (KServe's own CRD schema)
    predictor = isvc["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor and "nvidia.com/gpu" not in predictor["model"]["resources"]["limits"]
    assert predictor["model"]["env"][0] == {"name": "TIERGATE_EXPECTED_DIGEST", "value": stored.models["fake-1"]["digest"]}
    rig.step()
    assert rig.status()["phase"] == "Canary"  # ready, but the interval has not passed
    rig.clock.advance(31)
    rig.step()
    status = rig.status()
    assert status["phase"] == "Promoted" and status["current"]["version"] == "fake-1" and status["trafficPercent"] == 100
    assert status["lastAnalysis"]["passed"] and status["lastAnalysis"]["url"] == rig.canary.url
    assert rig.canary.requests, "the analysis talked to the canary"
    assert rig.reasons() == ["RolloutStarted", "Verified", "Promoted"]
    conditions = {condition["type"]: condition["status"] for condition in status["conditions"]}
    assert conditions == {"Ready": "True", "Verified": "True"}


def test_second_version_canaries_then_promotes_and_keeps_the_previous(rig: Rig, stored: Stored) -> None:
    promote_first(rig, stored)
    Kube(rig.kube.api_client()).patch(MODELS, NS, NAME, {"spec": {"model": stored.models["fake-2"]}})
    rig.step(2)
    isvc = rig.isvc()
    assert isvc is not None and isvc["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert rig.status()["trafficPercent"] == 20
    rig.clock.advance(31)
    rig.step(2)  # passes at 20 %, moves to 100 % and is ready there
    rig.step()
    status = rig.status()
    assert (
        status["phase"] == "Promoted" and status["current"]["version"] == "fake-2" and status["previous"]["version"] == "fake-1"
    )
    assert "canaryTrafficPercent" not in (rig.isvc() or {})["spec"]["predictor"]
    assert rig.kserve.splits[-1] == {stored.models["fake-2"]["storageUri"]: 100}


def roll_out_a_failing_second_version(rig: Rig, stored: Stored) -> None:
    """fake-1 promoted, then fake-2 judged on every `positives` vector (the fake canary fails most)."""
    promote_first(rig, stored)
    strict = {"analysis": {"suites": [{"name": "positives", "minPassRate": 1.0}]}}
    Kube(rig.kube.api_client()).patch(MODELS, NS, NAME, {"spec": {"model": stored.models["fake-2"], "rollout": strict}})
    rig.step(2)
    rig.clock.advance(31)
    rig.step(2)


def test_failing_suite_rolls_back(rig: Rig, stored: Stored) -> None:
    roll_out_a_failing_second_version(rig, stored)
    status = rig.status()
    assert status["phase"] == "RolledBack" and status["current"]["version"] == "fake-1"
    assert status["lastAnalysis"]["failingVectors"] and status["lastAnalysis"]["reason"] == "VectorsFailed"
    assert (rig.isvc() or {})["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert rig.kserve.splits[-1] == {stored.models["fake-1"]["storageUri"]: 100}


def test_unpublished_version_fails_before_anything_is_deployed(rig: Rig, stored: Stored) -> None:
    rig.kube.put(model_resource(stored.models["fake-3"]))
    rig.step()
    status = rig.status()
    assert status["phase"] == "Failed" and "not published" in status["message"]
    assert rig.isvc() is None and rig.reasons() == ["RolloutStarted", "VerificationFailed"]
    rig.step(3)  # settled: nothing retried, no new events
    assert rig.reasons() == ["RolloutStarted", "VerificationFailed"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gateDigest": "0" * 64}, "gate record"),  # another gate record than the stored one
        ({"digest": "0" * 64}, "spec asks for"),  # the URI's digest and the spec's disagree
        ({"name": "other"}, "spec asks for"),
    ],
)
def test_spec_digests_must_match_the_stored_copy(rig: Rig, stored: Stored, change: dict[str, str], message: str) -> None:
    rig.kube.put(model_resource({**stored.models["fake-1"], **change}))
    rig.step()
    assert rig.status()["phase"] == "Failed" and message in rig.status()["message"]
    assert rig.isvc() is None


def test_invalid_spec_fails_with_every_problem_named(rig: Rig, stored: Stored) -> None:
    rig.kube.put(model_resource(stored.models["fake-1"], steps=[50, 10, 100], timeoutSeconds=5))
    rig.step()
    status = rig.status()
    assert status["phase"] == "Failed" and "steps must increase" in status["message"] and "timeout" in status["message"]
    assert rig.isvc() is None and "InvalidSpec" in rig.reasons()


def test_foreign_inferenceservice_is_never_taken_over(rig: Rig, stored: Stored) -> None:
    foreign = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "triton"}, "storageUri": "s3://elsewhere/x"}}},
    }
    rig.kube.put(foreign)
    rig.kube.put(model_resource(stored.models["fake-1"]))
    rig.step(2)
    status = rig.status()
    assert status["phase"] == "Pending" and "not owned" in status["message"]
    assert (rig.isvc() or {})["spec"] == foreign["spec"]  # untouched
    assert rig.reasons() == ["ServiceNotOwned"]  # once, not per reconcile
    Kube(rig.kube.api_client()).delete(SERVICES, NS, NAME)
    rig.step()
    assert rig.status()["phase"] == "Canary"  # the rollout starts once the old service is gone


def test_status_conflict_is_retried_not_lost(rig: Rig, stored: Stored) -> None:
    rig.kube.put(model_resource(stored.models["fake-1"]))
    rig.kube.fail_next("PUT", r"/status$", 409)
    with pytest.raises(Conflict):
        rig.controller.reconcile(NS, NAME)
    assert rig.isvc() is None  # nothing moved on a decision that was not recorded
    rig.step()
    assert rig.status()["phase"] == "Canary" and rig.isvc() is not None


def test_a_crash_between_status_and_service_is_repaired_from_the_status(rig: Rig, stored: Stored) -> None:
    rig.kube.put(model_resource(stored.models["fake-1"]))
    rig.kube.fail_next("POST", r"/inferenceservices$", 500)
    with pytest.raises(ApiException):
        rig.controller.reconcile(NS, NAME)
    assert rig.status()["phase"] == "Canary" and rig.isvc() is None
    rig.step()
    assert rig.isvc() is not None and rig.reasons().count("Verified") == 1  # not verified twice


def test_a_forged_current_version_never_gets_the_service(rig: Rig, stored: Stored) -> None:
    promote_first(rig, stored)
    forged = {"version": "evil", "storageUri": "file:///etc/../tmp/evil/tiergate/evil/" + "e" * 64, "digest": "e" * 64}
    rig.kube.patch_status(GROUP, VERSION, PLURAL, NS, NAME, {"current": forged})
    rig.step()
    assert (rig.isvc() or {})["spec"]["predictor"]["model"]["storageUri"] == stored.models["fake-1"]["storageUri"]
    assert "RefusedToDeploy" in rig.reasons()


@pytest.mark.parametrize("damage", [None, {"current": None}, {"current": {"version": 7}}, {"phase": "Paused"}])
def test_a_status_that_loses_its_memory_mid_canary_falls_back_to_the_verified_version(
    rig: Rig, stored: Stored, damage: dict[str, Any] | None
) -> None:
    """The stable annotations the operator keeps on the service bring the verified version back: what serves
    is never deleted, and the candidate never takes more than its step (the second hostile probe's cases)."""
    strict = {"analysis": {"suites": [{"name": "positives", "minPassRate": 1.0}]}}
    promote_first(rig, stored)
    Kube(rig.kube.api_client()).patch(MODELS, NS, NAME, {"spec": {"model": stored.models["fake-2"], "rollout": strict}})
    rig.step(2)
    isvc = rig.isvc() or {}
    assert isvc["metadata"]["annotations"]["tiergate.io/stable-version"] == "fake-1"
    rig.kube.patch_status(GROUP, VERSION, PLURAL, NS, NAME, damage)  # None: the whole status emptied
    for _ in range(6):
        rig.clock.advance(31)
        rig.step()
    old, new = stored.models["fake-1"]["storageUri"], stored.models["fake-2"]["storageUri"]
    assert rig.isvc() is not None, "what served was deleted"
    assert all(split.get(new, 0) <= 20 for split in rig.kserve.splits), rig.kserve.splits
    assert rig.status()["current"]["version"] == "fake-1" and rig.kserve.splits[-1] == {old: 100}
    assert {"StatusRecovered", "StatusReset"} & set(rig.reasons())


def test_refusals_are_recorded_once_not_per_reconcile(rig: Rig, stored: Stored) -> None:
    promote_first(rig, stored)
    forged = {
        "version": "evil",
        "storageUri": stored.models["fake-1"]["storageUri"].replace("fake-1", "evil"),
        "digest": "e" * 64,
    }
    rig.kube.patch_status(GROUP, VERSION, PLURAL, NS, NAME, {"current": forged})
    Kube(rig.kube.api_client()).delete(SERVICES, NS, NAME)
    rig.step(5)
    assert rig.isvc() is None and rig.reasons().count("RefusedToDeploy") == 1


def test_unknown_suite_is_refused_before_anything_is_deployed(rig: Rig, stored: Stored) -> None:
    rig.kube.put(model_resource(stored.models["fake-1"], analysis={"suites": [{"name": "nosuchsuite"}]}))
    rig.step()
    assert rig.status()["phase"] == "Failed" and "unknown suites nosuchsuite" in rig.status()["message"]
    assert rig.isvc() is None


def test_service_deleted_mid_canary_never_gives_the_candidate_all_traffic(rig: Rig, stored: Stored) -> None:
    promote_first(rig, stored)
    Kube(rig.kube.api_client()).patch(MODELS, NS, NAME, {"spec": {"model": stored.models["fake-2"]}})
    rig.step(2)
    Kube(rig.kube.api_client()).delete(SERVICES, NS, NAME)
    rig.kserve = FakeKServe(rig.kube, rig.kserve.backends)  # the new service starts with no revisions
    rig.step(3)
    old, new = stored.models["fake-1"]["storageUri"], stored.models["fake-2"]["storageUri"]
    assert rig.kserve.splits[0] == {old: 100}  # the verified version came back first
    assert rig.kserve.splits[-1] == {old: 80, new: 20} and rig.status()["trafficPercent"] == 20


def test_deleted_service_is_recreated_at_the_promoted_version(rig: Rig, stored: Stored) -> None:
    promote_first(rig, stored)
    Kube(rig.kube.api_client()).delete(SERVICES, NS, NAME)
    rig.step()
    isvc = rig.isvc()
    assert isvc is not None and isvc["spec"]["predictor"]["model"]["storageUri"] == stored.models["fake-1"]["storageUri"]


def test_garbage_service_status_reads_as_not_ready(rig: Rig, stored: Stored) -> None:
    rig.kube.put(model_resource(stored.models["fake-1"]))
    rig.controller.reconcile(NS, NAME)
    garbage = {"observedGeneration": "x", "components": {"predictor": {"traffic": ["a", {"percent": "abc"}]}}, "conditions": 3}
    rig.kube.patch_status(*ISVC, NS, NAME, garbage)
    rig.clock.advance(31)
    rig.controller.reconcile(NS, NAME)  # no exception
    assert rig.status()["phase"] == "Canary" and rig.status()["trafficPercent"] == 0


def test_deleting_the_model_removes_its_service(rig: Rig, stored: Stored) -> None:
    promote_first(rig, stored)
    Kube(rig.kube.api_client()).delete(MODELS, NS, NAME)
    assert rig.kube.get(GROUP, VERSION, PLURAL, NS, NAME) is not None  # held by the finalizer
    rig.controller.reconcile(NS, NAME)
    assert rig.kube.get(GROUP, VERSION, PLURAL, NS, NAME) is None and rig.isvc() is None


def test_service_events_wake_their_model_and_the_queue_deduplicates(rig: Rig) -> None:
    owned = {"metadata": {"namespace": NS, "name": "x", "ownerReferences": [{"kind": "ModerationModel", "name": NAME}]}}
    rig.controller._enqueue(SERVICES, owned)
    rig.controller._enqueue(SERVICES, {"metadata": {"namespace": NS, "name": "y"}})  # not ours: ignored
    import threading

    stop = threading.Event()
    assert rig.controller.queue.get(stop) == (NS, NAME)
    queue = WorkQueue()
    queue.add(("a", "b"), 60)
    queue.add(("a", "b"), 0)  # the earlier time wins
    queue.add(("a", "b"), 30)
    assert queue.get(stop) == ("a", "b")
    stop.set()
    assert queue.get(stop) is None


# --- leader election ---------------------------------------------------------------------------------------


def test_one_leader_at_a_time_and_takeover_after_expiry() -> None:
    clock = Clock()
    with FakeKube() as kube:

        def elector(identity: str, skew_s: float = 0.0) -> LeaderElector:
            wall = lambda: clock() + timedelta(seconds=skew_s)  # noqa: E731
            return LeaderElector(
                Kube(kube.api_client()), NS, "lease", identity, lease_s=15, renew_s=5, clock=wall, monotonic=clock.mono
            )

        first, second = elector("a"), elector("b", skew_s=3600)  # b's wall clock is an hour ahead
        assert first.try_acquire_or_renew() and first.leading
        assert not second.try_acquire_or_renew() and not second.leading  # skew does not make a live Lease look old
        clock.advance(10)
        assert first.try_acquire_or_renew()  # renewed
        clock.advance(14)
        assert not second.try_acquire_or_renew()  # sees the renewed record: its own 15 s start now
        clock.advance(14)
        assert not second.try_acquire_or_renew()
        clock.advance(2)
        assert second.try_acquire_or_renew()  # unrenewed for 16 s by b's own clock: taken over
        lease = kube.get("coordination.k8s.io", "v1", "leases", NS, "lease")
        assert lease is not None and lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
        assert not first.leading  # a's own deadline (10 s after its last renew) passed long ago
        assert not first.try_acquire_or_renew()
        second.release()
        assert first.try_acquire_or_renew()  # released: no wait


def test_racing_for_an_expired_lease_has_one_winner() -> None:
    clock = Clock()
    with FakeKube() as kube:
        first = LeaderElector(Kube(kube.api_client()), NS, "lease", "a", clock=clock, monotonic=clock.mono)
        second = LeaderElector(Kube(kube.api_client()), NS, "lease", "b", clock=clock, monotonic=clock.mono)
        assert first.try_acquire_or_renew() and not second.try_acquire_or_renew()
        clock.advance(60)
        kube.fail_next("PUT", r"/leases/lease$", 409)  # another replica wrote first
        assert not second.try_acquire_or_renew() and not second.leading


def test_an_odd_lease_or_a_dead_api_never_kills_the_election() -> None:
    clock = Clock()
    with FakeKube() as kube:
        kube.put(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "lease", "namespace": NS},
                "spec": {"holderIdentity": "x", "leaseDurationSeconds": "15s", "leaseTransitions": "many"},
            }
        )
        elector = LeaderElector(Kube(kube.api_client()), NS, "lease", "a", clock=clock, monotonic=clock.mono)
        assert not elector.try_acquire_or_renew()
        clock.advance(16)
        assert elector.try_acquire_or_renew()
    nowhere = kubernetes.client.Configuration()
    nowhere.host = "http://127.0.0.1:9"  # discard port: connection refused
    dead = LeaderElector(Kube(kubernetes.client.ApiClient(nowhere), request_timeout_s=2), NS, "lease", "a")
    assert dead.try_acquire_or_renew() is False  # urllib3's MaxRetryError: a warning, not an exception


# --- the CLI --------------------------------------------------------------------------------------------------


def kubeconfig(kube: FakeKube, folder: Path) -> Path:
    return kube.write_kubeconfig(folder / "kubeconfig")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tiergate.cli.main", *args], capture_output=True, text=True, timeout=120)


def test_status_shows_versions_phase_traffic_and_the_failing_vectors(rig: Rig, stored: Stored, tmp_path: Path) -> None:
    roll_out_a_failing_second_version(rig, stored)
    config = kubeconfig(rig.kube, tmp_path)
    result = cli("status", "--kubeconfig", str(config))
    assert result.returncode == 0, result.stderr
    assert "ml/tiergate: RolledBack" in result.stdout and "version fake-2: 0 % of traffic; serving fake-1" in result.stdout
    as_json = json.loads(cli("status", NAME, "-n", NS, "--kubeconfig", str(config), "--json").stdout)
    failing = as_json["lastAnalysis"]["failingVectors"]
    assert failing and all(f"FAIL {vector['id']} [{vector['context']}]" in result.stdout for vector in failing[:10])
    assert len(failing) <= 10 or f"... and {len(failing) - 10} more" in result.stdout
    assert "    positives: " in result.stdout and "(need 100%)" in result.stdout
    as_json = json.loads(cli("status", NAME, "-n", NS, "--kubeconfig", str(config), "--json").stdout)
    assert as_json["phase"] == "RolledBack" and as_json["serving"] == "fake-1" and as_json["traffic"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "tiergate"], "a name needs --namespace"),
        (["status", "Bad_Name", "-n", "ml"], "not a DNS label"),
        (["status", "nothing", "-n", "ml"], "no ModerationModel ml/nothing"),
        (["operator", "run", "--analysis-address", "nonsense"], "use cluster-local or status"),
        (["operator", "run", "--namespace", "../x"], "not a DNS label"),
        (["operator", "run", "--profile", "local"], "--lease-namespace is needed"),
    ],
)
def test_cli_mistakes_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    with FakeKube() as kube:
        result = cli(*args, "--kubeconfig", str(kubeconfig(kube, tmp_path)))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_status_reads_damaged_objects_without_hiding_the_others(tmp_path: Path) -> None:
    with FakeKube() as kube:
        base = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModerationModel"}
        kube.put({**base, "metadata": {"name": "a", "namespace": NS}, "spec": {"model": "oops"}, "status": {"current": "v1"}})
        kube.put(
            {
                **base,
                "metadata": {"name": "b", "namespace": NS},
                "spec": {},
                "status": {"phase": "Promoted", "message": "ok\x1b[31m\nINJECTED", "lastAnalysis": "x"},
            }
        )
        result = cli("status", "--kubeconfig", str(kubeconfig(kube, tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "ml/a: Unknown" in result.stdout and "ml/b: Unknown" in result.stdout and "status unreadable" in result.stdout
    assert "\x1b" not in result.stdout and "\nINJECTED" not in result.stdout


def test_cli_without_credentials_or_server_is_one_line(tmp_path: Path) -> None:
    missing = cli("status", "--kubeconfig", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no usable Kubernetes credentials" in missing.stderr
    with FakeKube() as kube:
        config = kubeconfig(kube, tmp_path)
    down = cli("status", "--kubeconfig", str(config))  # the server is gone
    assert down.returncode == 2 and down.stderr.count("\n") == 1 and "cannot reach the Kubernetes API" in down.stderr
    operator = cli("operator", "run", "--kubeconfig", str(config), "--namespace", NS, "--health-port", "0")
    assert operator.returncode == 2 and operator.stderr.count("\n") == 1 and "cannot reach the Kubernetes API" in operator.stderr
