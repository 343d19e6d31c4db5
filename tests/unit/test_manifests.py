"""Manifests against the real KServe CRD schemas (vendored: tiergate/vendor/kserve), tiergate's own CRD
(tiergate/crds: the ModerationModel) and Kubernetes core types."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tiergate.errors import ManifestError
from tiergate.k8s_validation import (
    CRD_DIR,
    KSERVE_CRDS,
    TIERGATE_CRD_DIR,
    TIERGATE_CRDS,
    crd_schema,
    validate_manifest,
    validate_text,
)
from tiergate.paths import PROJECT_ROOT

MANIFESTS = sorted((PROJECT_ROOT / "manifests").rglob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: str(path.relative_to(PROJECT_ROOT)))
def test_every_manifest_validates(path: Path) -> None:
    assert validate_text(path.read_text()) >= 1


def _isvc() -> dict[str, Any]:
    """An InferenceService of the shape the operator creates (the chart renders none since the operator owns it)."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "tiergate", "namespace": "tiergate"},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 4,
                "automountServiceAccountToken": False,
                "model": {
                    "modelFormat": {"name": "triton", "version": "2"},
                    "runtime": "tiergate-triton",
                    "protocolVersion": "v2",
                    "storageUri": "s3://tiergate-models/tiergate/example/" + "0" * 64,
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                },
            }
        },
    }


def _moderation_model() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "manifests/kserve/moderationmodel.yaml").read_text())


def test_inferenceservice_of_the_operators_shape_validates() -> None:
    validate_manifest(_isvc())


def test_moderation_model_asks_for_a_gated_version_on_the_triton_runtime() -> None:
    resource = _moderation_model()
    assert resource["apiVersion"] == "tiergate.io/v1alpha1" and resource["kind"] == "ModerationModel"
    model = resource["spec"]["model"]
    assert model["storageUri"].startswith("s3://") and model["storageUri"].endswith("/" + model["digest"])
    assert re.fullmatch(r"[0-9a-f]{64}", model["gateDigest"])
    assert resource["spec"]["serving"]["runtime"] == "tiergate-triton" and resource["spec"]["serving"]["gpu"] == 1
    assert resource["spec"]["rollout"]["steps"][-1] == 100


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["spec"]["model"].update(digests="x"), "unknown field(s) /spec/model/digests"),
        (lambda d: d["spec"]["serving"].update(canaryTrafficPercent=10), "unknown field(s) /spec/serving/canaryTrafficPercent"),
        (lambda d: d["spec"]["model"].pop("gateDigest"), "'gateDigest' is a required property"),
        (lambda d: d["spec"]["model"].update(digest="A" * 64), "does not match"),
        (lambda d: d["spec"]["model"].update(storageUri="s3://m/tiergate/v1/latest"), "does not match"),
        (lambda d: d["spec"]["rollout"].update(steps=[10, 101]), "101 is greater than the maximum of 100"),
        (lambda d: d["spec"]["rollout"].update(timeoutSeconds=5), "5 is less than the minimum of 30"),
        (lambda d: d["spec"]["serving"].update(scaleMetric="latency"), "'latency' is not one of"),
        (lambda d: d["metadata"].update(name="m" * 46), "is too long"),
        (lambda d: d.update(status={"phase": "Done"}), "'Done' is not one of"),
        (lambda d: d.pop("spec"), "'spec' is a required property"),
    ],
)
def test_broken_moderation_model_is_rejected(mutate: Any, message: str) -> None:
    document = copy.deepcopy(_moderation_model())
    mutate(document)
    with pytest.raises(ManifestError, match=re.escape(message)):
        validate_manifest(document)


def test_moderation_model_metadata_is_object_meta_and_status_validates() -> None:
    """Labels and annotations are the API server's (not unknown fields); a status the operator writes validates."""
    document = copy.deepcopy(_moderation_model())
    document["metadata"].update(namespace="tiergate", annotations={"a": "b"}, finalizers=["tiergate.io/rollout"])
    document["status"] = {
        "phase": "RolledBack",
        "observedGeneration": 3,
        "trafficPercent": 0,
        "current": {"version": "v1", "storageUri": "s3://m/tiergate/v1/" + "a" * 64, "digest": "a" * 64},
        "lastAnalysis": {
            "version": "v2",
            "stepIndex": 0,
            "trafficPercent": 10,
            "time": "2026-11-26T00:00:00Z",
            "passed": False,
            "reason": "VectorsFailed",
            "failingVectors": [{"id": "pos-1", "suite": "positives"}],
        },
        "conditions": [{"type": "Ready", "status": "False", "reason": "RolledBack"}],
    }
    validate_manifest(document)
    del document["status"]["lastAnalysis"]["reason"]  # the CRD requires what the operator always writes
    with pytest.raises(ManifestError, match="reason"):
        validate_manifest(document)


def test_tiergate_crds_ship_in_the_package() -> None:
    assert TIERGATE_CRD_DIR.is_relative_to(PROJECT_ROOT / "tiergate"), TIERGATE_CRD_DIR
    for (group, kind), name in TIERGATE_CRDS.items():
        crd = yaml.safe_load((TIERGATE_CRD_DIR / name).read_text())
        assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, kind)
        assert crd_schema(group, kind, "v1alpha1")["properties"]["spec"]["required"] == ["model"]
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert re.search(r'^"tiergate" = \[.*"crds/\*\.yaml"', pyproject, re.MULTILINE), "crds/*.yaml is not package data"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["spec"]["predictor"].update(minReplica=1), "unknown field(s) /spec/predictor/minReplica"),
        (lambda d: d["spec"]["predictor"].update(minReplicas="one"), "'one' is not of type 'integer'"),
        (lambda d: d["spec"]["predictor"]["model"].update(modelFormat={}), "'name' is a required property"),
        (lambda d: d["spec"].pop("predictor"), "'predictor' is a required property"),
    ],
)
def test_broken_inferenceservice_is_rejected(mutate: Any, message: str) -> None:
    document = copy.deepcopy(_isvc())
    mutate(document)
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_manifest(document)


def test_broken_core_manifest_is_rejected() -> None:
    pvc = yaml.safe_load((PROJECT_ROOT / "manifests/kfp/pvc-cache.yaml").read_text())
    pvc["spec"]["accessModes"] = "ReadWriteOnce"  # must be a list
    with pytest.raises(ManifestError):
        validate_manifest(pvc)


def test_kserve_crds_are_vendored_with_licence_and_provenance() -> None:
    """The schemas ship in the package: a clone without ../shared, or an image, validates the same."""
    assert CRD_DIR.is_relative_to(PROJECT_ROOT / "tiergate"), CRD_DIR
    readme = (CRD_DIR / "README.md").read_text()
    assert "Apache License" in (CRD_DIR / "LICENSE").read_text()
    assert re.search(r"kserve/kserve.*\n?.*commit `[0-9a-f]{40}`", readme)
    for name in KSERVE_CRDS.values():
        digest = hashlib.sha256((CRD_DIR / name).read_bytes()).hexdigest()
        assert f"`{name}` | `{digest}`" in readme, f"{name}: digest not recorded in {CRD_DIR / 'README.md'}"


def test_a_missing_schema_is_an_error_never_a_skip(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="is missing: this tiergate installation is incomplete"):
        crd_schema("serving.kserve.io", "InferenceService", "v1beta1", tmp_path)
    with pytest.raises(ManifestError, match=r"tiergate CRD schema .* is missing"):
        crd_schema("tiergate.io", "ModerationModel", "v1alpha1", tmp_path)
    with pytest.raises(ManifestError, match=r"tiergate\.io/ModerationPolicy: no vendored tiergate schema"):
        validate_manifest({**_moderation_model(), "kind": "ModerationPolicy"})
    document = _isvc()
    document["kind"] = "InferenceGraph"
    with pytest.raises(ManifestError, match=r"serving\.kserve\.io/InferenceGraph: no vendored KServe schema"):
        validate_manifest(document)


def test_no_code_reads_the_shared_folder() -> None:
    """../shared exists only on the machine this grew on: nothing shipped or tested may depend on it
    (the public data sets there excepted: tests that use them say so by name)."""
    reference = re.compile(r"(\.\./shared|/work/shared)(?!/public-data)|parent / \"shared\"")
    folders = ("tiergate", "components", "pipelines", "serving", "cli", "tests", "charts", "manifests")
    files = [path for folder in folders for path in (PROJECT_ROOT / folder).rglob("*")]
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in files
        if path.suffix in {".py", ".yaml", ".tpl", ".json"}
        and path != Path(__file__).resolve()
        and reference.search(path.read_text(errors="replace"))
    ]
    assert offenders == []


def _documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_applying_the_manifests_never_writes_a_secret() -> None:
    """`kubectl apply -f manifests/kfp/` must not overwrite a real key with a placeholder: Secrets are created by hand."""
    assert [doc["metadata"]["name"] for doc in _documents() if doc.get("kind") == "Secret"] == []


def test_generation_cache_is_read_write_many() -> None:
    pvc = yaml.safe_load((PROJECT_ROOT / "manifests/kfp/pvc-cache.yaml").read_text())
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "generate tasks run in parallel, on several nodes"


def test_the_pipeline_service_account_is_the_one_submit_uses_and_reads_no_tiergate_secret() -> None:
    from tiergate.pipelines.submit import DEFAULT_SERVICE_ACCOUNT
    from tiergate.profiles import load_profile

    documents = _documents()
    accounts = [doc["metadata"]["name"] for doc in documents if doc["kind"] == "ServiceAccount"]
    assert DEFAULT_SERVICE_ACCOUNT in accounts
    bindings = [doc for doc in documents if doc["kind"] == "RoleBinding"]
    binding = next(doc for doc in bindings if doc["metadata"]["name"] == DEFAULT_SERVICE_ACCOUNT)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": DEFAULT_SERVICE_ACCOUNT, "namespace": "kubeflow"}]
    role = next(doc for doc in documents if doc["kind"] == "Role" and doc["metadata"]["name"] == binding["roleRef"]["name"])
    settings = load_profile("production").pipeline
    ours = {settings.anthropic_secret, settings.gitops_secret, settings.object_store_secret}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        if "secrets" in rule["resources"]:
            assert rule.get("resourceNames") and not ours & set(rule["resourceNames"]), rule
            assert rule["verbs"] == ["get"]


def test_readme_creates_exactly_the_secrets_the_pipeline_reads() -> None:
    """The `kubectl create secret` commands in the README name the Secrets and keys compiled into the pipeline."""
    from tiergate.profiles import load_profile

    readme = (PROJECT_ROOT / "README.md").read_text()
    commands = re.findall(r"kubectl -n kubeflow create secret generic ([\w-]+)((?:\s*\\\n\s*--from-literal=[\w-]+=\S+)+)", readme)
    documented = {name: set(re.findall(r"--from-literal=([\w-]+)=", literals)) for name, literals in commands}
    settings = load_profile("production").pipeline
    assert documented == {
        settings.anthropic_secret: {settings.anthropic_secret_key},
        settings.object_store_secret: set(settings.object_store_secret_env),
        settings.gitops_secret: {settings.gitops_secret_key},
    }


def _review_objects() -> list[dict[str, Any]]:
    """The serving chart's review service objects, rendered with real Helm (review and its Ingress on)."""
    from helm_python import Chart

    values = {
        "model": {"version": "v1", "storageUri": "s3://m/tiergate/v1/" + "a" * 64, "digest": "a" * 64, "gateDigest": "c" * 64},
        "review": {"enabled": True, "ingress": {"enabled": True, "tlsSecret": "review-tls"}},
    }
    rendered = Chart.load(str(PROJECT_ROOT / "charts" / "tiergate-serving")).render(values, name="tiergate", namespace="tiergate")
    return [
        document
        for name, text in rendered.items()
        if name.endswith(".yaml") and "/review-" in name
        for document in yaml.safe_load_all(text)
        if document
    ]


def test_review_service_objects_validate_as_kubernetes_types() -> None:
    objects = _review_objects()
    assert sorted(document["kind"] for document in objects) == ["Deployment", "Ingress", "NetworkPolicy", "Service"]
    for document in objects:
        validate_manifest(document)


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="http")),
        ("Deployment", lambda d: d["spec"]["template"]["spec"].update(automountServiceAccountToken="no")),
        ("Service", lambda d: d["spec"].update(ports=[{"port": "eighty"}])),
        ("Ingress", lambda d: d["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].update(port={"number": "80"})),
    ],
)
def test_a_broken_review_object_is_rejected(kind: str, mutate: Any) -> None:
    document = copy.deepcopy(next(d for d in _review_objects() if d["kind"] == kind))
    mutate(document)
    with pytest.raises(ManifestError):
        validate_manifest(document)
