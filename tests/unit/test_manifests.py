"""Manifests against the real KServe CRD schemas (vendored: tiergate/vendor/kserve) and Kubernetes core types."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tiergate.errors import ManifestError
from tiergate.k8s_validation import CRD_DIR, KSERVE_CRDS, crd_schema, validate_manifest, validate_text
from tiergate.paths import PROJECT_ROOT

MANIFESTS = sorted((PROJECT_ROOT / "manifests").rglob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: str(path.relative_to(PROJECT_ROOT)))
def test_every_manifest_validates(path: Path) -> None:
    assert validate_text(path.read_text()) >= 1


def _isvc() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "manifests/kserve/inferenceservice.yaml").read_text())


def test_inferenceservice_serves_triton_v2_on_gpu() -> None:
    model = _isvc()["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] == "v2"
    assert model["runtime"] == "tiergate-triton" and model["storageUri"].startswith("s3://")
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"


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
