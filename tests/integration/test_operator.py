"""The operator's real loop against the fake API server, KServe's rollout rules and real local Tritons.

Three versions of the tiny model are packaged and published to a `file://` store by the real path:
`v-good` and `v-good2` with thresholds that flag everything (every `positives` vector passes), and
`v-bad` with thresholds that flag nothing — a broken candidate whose gate record claims good numbers,
the failure only a live check can catch. Each is served by its own real Triton; the fake KServe
routes the canary's tag URL to it.

- in-process: the first version is verified live and promoted; `v-bad` is canaried at 10 %, fails its
  vectors and is rolled back with them in the status; a tampered stored copy is refused before any
  revision exists; deleting the ModerationModel removes its InferenceService; the calls the operator
  made are all granted by the operator chart's RBAC.
- `tiergate operator run` as a subprocess, killed (SIGKILL) mid-rollout and started again under
  another identity: it waits out the dead replica's Lease, then resumes at the step it was at.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import tiny_profile
from tests.fake_kserve import FakeKServe
from tests.fake_kube import FakeKube
from tests.helm_helpers import render_documents
from tests.operator_helpers import operator_settings
from tests.trust_helpers import passing_gate
from tiergate.gate import configured_policy, load_gate, write_gate
from tiergate.hashing import read_json, sha256_file, write_json
from tiergate.moderation_model import GROUP, PLURAL, VERSION
from tiergate.paths import project_path
from tiergate.profiles import PublishSettings, load_profile
from tiergate.regression import load_suites
from tiergate.serving.operator.controller import Controller
from tiergate.serving.operator.kube import MODELS, Kube
from tiergate.serving.operator.leader import LeaderElector
from tiergate.serving.operator.runner import run
from tiergate.serving.server import TritonServer, free_port
from tiergate.taxonomy import Taxonomy

pytestmark = pytest.mark.slow

NAMESPACE = "ml"
NAME = "tiergate"
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")


@dataclass
class Version:
    name: str
    uri: str
    digest: str
    gate_digest: str
    url: str = ""

    def model(self) -> dict[str, str]:
        return {
            "name": "tiergate",
            "version": self.name,
            "storageUri": self.uri,
            "digest": self.digest,
            "gateDigest": self.gate_digest,
        }


@dataclass
class World:
    store: PublishSettings
    versions: dict[str, Version]
    profile_path: Path


def _package(
    root: Path, taxonomy: Taxonomy, tiny_export: Path, tiny_evaluation: Path, tiny_base: Path, version: str, threshold: float
) -> Path:
    """The tiny model with every threshold at `threshold`, gated by a record that claims passing numbers."""
    from tiergate.components.package.repository import build_repository

    evaluation = root / f"evaluation-{version}"
    shutil.copytree(tiny_evaluation, evaluation)
    thresholds = read_json(evaluation / "thresholds.json")
    thresholds["thresholds"] = dict.fromkeys(thresholds["thresholds"], threshold)
    write_json(evaluation / "thresholds.json", thresholds)
    judged = load_gate(tiny_evaluation).judged.model_copy(
        update={"thresholds_sha256": sha256_file(evaluation / "thresholds.json")}
    )
    write_gate(evaluation, passing_gate(judged))
    out = root / f"repository-{version}"
    build_repository(taxonomy, tiny_profile(tiny_base).serving, tiny_export, evaluation, out, version)
    return out


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy, tiny_export: Path, tiny_evaluation: Path, tiny_base: Path
) -> Iterator[World]:
    from tiergate.components.publish.step import publish_repository

    root = tmp_path_factory.mktemp("operator")
    store = PublishSettings(store=f"file://{root}/store", pvc_mount_root=str(root / "pvc"))
    policy = configured_policy(taxonomy, load_profile("local"))
    versions: dict[str, Version] = {}
    repositories: dict[str, Path] = {}
    for name, threshold in (("v-good", 0.0), ("v-bad", 2.0), ("v-good2", 0.0), ("v-tampered", 0.0)):
        repositories[name] = _package(root, taxonomy, tiny_export, tiny_evaluation, tiny_base, name, threshold)
        published = publish_repository(repositories[name], store, policy)
        manifest = read_json(repositories[name] / "repository.json")
        versions[name] = Version(name, published["uri"], published["digest"], manifest["gate_digest"])
    tampered = Path(versions["v-tampered"].uri.removeprefix("file://")) / "postprocess" / "1" / "thresholds.json"
    tampered.write_text(tampered.read_text().replace("0.0", "0.5", 1))  # one stored byte changed after publishing
    profile_path = root / "operator-profile.yaml"
    profile_path.write_text(yaml.safe_dump({"extends": "local", "name": "operator-test", "publish": store.model_dump()}))
    servers = []
    try:
        for name in ("v-good", "v-bad", "v-good2"):  # one at a time: 2 cores
            server = TritonServer(repositories[name], root / f"triton-{name}").__enter__()
            servers.append(server)
            versions[name].url = f"http://{server.http_url}"
        yield World(store, versions, profile_path)
    finally:
        for server in servers:
            server.__exit__(None, None, None)


def mm(version: Version, **rollout: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModerationModel",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": version.model(),
            "serving": {"gpu": 0},
            "rollout": {
                "steps": [10, 50, 100],
                "stepIntervalSeconds": 1,
                "timeoutSeconds": 60,
                "analysis": {"suites": [{"name": "positives", "minPassRate": 1.0}]},
                **rollout,
            },
        },
    }


def wait_for(condition: Callable[[], Any], timeout_s: float = 120, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(kube: FakeKube) -> dict[str, Any]:
    found = kube.get(GROUP, VERSION, PLURAL, NAMESPACE, NAME)
    return (found or {}).get("status") or {}


def phase_is(kube: FakeKube, phase: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        status = status_of(kube)
        return status if status.get("phase") == phase else None

    return check


def set_model(kube: FakeKube, version: Version, **rollout: Any) -> None:
    """A spec change through the API (a merge patch of the spec): the operator's status writes are untouched."""
    Kube(kube.api_client()).patch(MODELS, NAMESPACE, NAME, {"spec": mm(version, **rollout)["spec"]})


def reasons(kube: FakeKube) -> list[str]:
    return [event["reason"] for event in kube.events(NAMESPACE)]


@pytest.fixture
def operator(world: World, taxonomy: Taxonomy) -> Iterator[tuple[FakeKube, FakeKServe]]:
    with FakeKube() as kube, FakeKServe(kube, {v.uri: v.url for v in world.versions.values() if v.url}) as kserve:
        client = Kube(kube.api_client())
        settings = operator_settings(NAMESPACE, world.store, taxonomy, "operator-test", resync_seconds=2, watch_timeout_seconds=5)
        stop = threading.Event()
        elector = LeaderElector(client, NAMESPACE, "tiergate-operator", "operator-test", lease_s=6, renew_s=2)
        thread = threading.Thread(target=run, args=(Controller(client, settings), elector, None, stop), daemon=True)
        thread.start()
        try:
            yield kube, kserve
        finally:
            stop.set()
            thread.join(timeout=60)
            assert not thread.is_alive(), "the operator did not stop"


def test_good_version_promoted_bad_one_rolled_back(
    operator: tuple[FakeKube, FakeKServe], world: World, taxonomy: Taxonomy
) -> None:
    kube, kserve = operator
    good, bad = world.versions["v-good"], world.versions["v-bad"]
    kube.put(mm(good))

    status = wait_for(phase_is(kube, "Promoted"), what="the first version promoted")
    assert status["current"]["version"] == "v-good" and status["trafficPercent"] == 100
    assert status["lastAnalysis"]["passed"] and status["lastAnalysis"]["trafficPercent"] == 100
    required = len(
        next(
            suite for suite in load_suites(project_path("config/regression"), taxonomy) if suite.suite == "positives"
        ).hard_vectors
    )
    assert status["lastAnalysis"]["suites"]["positives"].startswith(f"{required}/{required}")
    isvc = kube.get(*ISVC, NAMESPACE, NAME)
    owner = kube.get(GROUP, VERSION, PLURAL, NAMESPACE, NAME)
    assert isvc is not None and owner is not None
    assert isvc["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == good.uri
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
    assert "tiergate.io/rollout" in owner["metadata"]["finalizers"]
    assert {"RolloutStarted", "Verified", "Promoted"} <= set(reasons(kube))

    set_model(kube, bad)
    status = wait_for(phase_is(kube, "RolledBack"), what="the broken candidate rolled back")
    analysis = status["lastAnalysis"]
    assert status["current"]["version"] == "v-good" and status["trafficPercent"] == 0
    assert not analysis["passed"] and analysis["version"] == "v-bad" and analysis["trafficPercent"] == 10
    assert analysis["suites"]["positives"].startswith(f"0/{required}")
    positives = {
        vector["id"] for vector in yaml.safe_load((project_path("config/regression") / "positives.yaml").read_text())["vectors"]
    }
    failing = [vector["id"] for vector in analysis["failingVectors"]]
    assert failing and set(failing) <= positives
    assert failing[0] in status["message"] and "all traffic on v-good" in status["message"]
    # the status is written first, then the service moves (a crash between is repaired from the status)
    wait_for(lambda: (kube.get(*ISVC, NAMESPACE, NAME) or {})["spec"]["predictor"].get("canaryTrafficPercent") == 0, 10, "0 %")
    wait_for(lambda: kserve.splits[-1] == {good.uri: 100}, 10, "all traffic back on the verified version")
    assert max(split.get(bad.uri, 0) for split in kserve.splits) == 10  # never more than its first step
    warnings = [event for event in kube.events(NAMESPACE) if event["type"] == "Warning"]
    assert [event["reason"] for event in warnings] == ["AnalysisFailed"]

    time.sleep(5)  # two resyncs: a rolled-back version is not retried
    assert status_of(kube)["lastAnalysis"] == analysis and reasons(kube).count("RolloutStarted") == 2

    tampered = world.versions["v-tampered"]
    set_model(kube, tampered)
    status = wait_for(phase_is(kube, "Failed"), what="the tampered copy refused")
    assert "not deployed" in status["message"] and "thresholds.json" in status["message"]
    assert tampered.uri not in {uri for split in kserve.splits for uri in split}  # no revision was ever made of it
    assert status["current"]["version"] == "v-good"

    set_model(kube, good)
    wait_for(phase_is(kube, "Promoted"), what="the spec back on the serving version")
    wait_for(lambda: "canaryTrafficPercent" not in (kube.get(*ISVC, NAMESPACE, NAME) or {})["spec"]["predictor"], 10, "no canary")

    Kube(kube.api_client()).delete(MODELS, NAMESPACE, NAME)
    wait_for(lambda: kube.get(GROUP, VERSION, PLURAL, NAMESPACE, NAME) is None, 30, "the finalizer released")
    assert kube.get(*ISVC, NAMESPACE, NAME) is None

    granted = _granted_by_chart()
    test_own = {("tiergate.io", "moderationmodels", "delete")}  # the test deleted the model; the operator never does
    used = {(group, resource, verb) for group, resource, verb in kube.verbs() if resource} - test_own
    assert used - granted == set(), f"the operator used verbs its RBAC does not grant: {used - granted}"
    admission_only = {("tiergate.io", "moderationmodels/finalizers", "update")}  # checked by an admission plugin, not a call
    assert granted - used - admission_only - LEASE_GRANTS == set(), f"granted but never used: {granted - used}"


LEASE_GRANTS = {("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")}


def _granted_by_chart() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) the operator chart's Role and ClusterRole grant (the operator's namespace-scoped install)."""
    documents = render_documents(
        project_path("charts/tiergate-operator"), {"watchNamespace": NAMESPACE}, "tiergate-operator", NAMESPACE
    )
    granted = set()
    for document in documents:
        if document["kind"] in ("Role", "ClusterRole"):
            for rule in document["rules"]:
                for group in rule.get("apiGroups", []):
                    for resource in rule.get("resources", []):
                        for verb in rule.get("verbs", []):
                            granted.add((group, resource, verb))
    return granted


# --- a real process, killed mid-rollout ---------------------------------------------------------------------


def kubeconfig(kube: FakeKube, folder: Path) -> Path:
    return kube.write_kubeconfig(folder / "kubeconfig", namespace=NAMESPACE)


class OperatorProcess:
    def __init__(self, config: Path, profile: Path, identity: str, log: Path):
        self.health = free_port()
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tiergate.cli.main", "operator", "run", "--kubeconfig", str(config),
                "--namespace", NAMESPACE, "--profile", str(profile), "--analysis-address", "status",
                "--identity", identity, "--health-port", str(self.health), "--resync-seconds", "2",
            ],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip

    def probe(self, path: str) -> int:
        try:
            return httpx.get(f"http://127.0.0.1:{self.health}{path}", timeout=2).status_code
        except httpx.HTTPError:
            return 0

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.log.close()


def test_operator_killed_mid_rollout_resumes_where_it_was(world: World, tmp_path: Path) -> None:
    good, good2 = world.versions["v-good"], world.versions["v-good2"]
    with FakeKube() as kube, FakeKServe(kube, {v.uri: v.url for v in world.versions.values() if v.url}) as kserve:
        config = kubeconfig(kube, tmp_path)
        first = OperatorProcess(config, world.profile_path, "operator-a", tmp_path / "a.log")
        try:
            kube.put(mm(good))
            wait_for(phase_is(kube, "Promoted"), what=f"v-good promoted: {(tmp_path / 'a.log').read_text()[-2000:]}")
            assert wait_for(lambda: first.probe("/readyz") == 200 and first.probe("/healthz") == 200, 10, "probes")
            set_model(kube, good2, stepIntervalSeconds=4)
            at_50 = wait_for(
                lambda: (
                    (s := status_of(kube)).get("phase") == "Canary"
                    and s.get("stepIndex") == 1
                    and s.get("trafficPercent") == 50
                    and s
                ),
                what="the canary at 50 %",
            )
        finally:
            first.kill()
        lease = kube.get("coordination.k8s.io", "v1", "leases", NAMESPACE, "tiergate-operator")
        assert lease is not None and lease["spec"]["holderIdentity"] == "operator-a"

        second = OperatorProcess(config, world.profile_path, "operator-b", tmp_path / "b.log")
        try:
            seen: list[tuple[str, int]] = []

            def promoted() -> bool:
                status = status_of(kube)
                seen.append((status.get("phase", ""), int(status.get("stepIndex", 0))))
                return status.get("phase") == "Promoted"

            wait_for(promoted, 120, f"v-good2 promoted after the restart: {(tmp_path / 'b.log').read_text()[-2000:]}")
        finally:
            second.kill()
        status = status_of(kube)
        assert status["current"]["version"] == "v-good2" and status["previous"]["version"] == "v-good"
        assert status["rolloutStartedAt"] == at_50["rolloutStartedAt"]  # the same rollout, not a new one
        assert all(phase != "Verifying" and not (phase == "Canary" and step < 1) for phase, step in seen), seen
        assert reasons(kube).count("RolloutStarted") == 2 and reasons(kube).count("Verified") == 2  # one each per version
        lease = kube.get("coordination.k8s.io", "v1", "leases", NAMESPACE, "tiergate-operator")
        assert lease is not None and lease["spec"]["leaseTransitions"] >= 1
        assert [split.get(good2.uri, 0) for split in kserve.splits if good2.uri in split] == [10, 50, 100]
        assert json.loads(json.dumps(status))  # the status is plain JSON
