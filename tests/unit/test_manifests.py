"""Manifests against the real KServe CRD schemas (../shared/crds/kserve) and Kubernetes core types."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tiergate.errors import ManifestError
from tiergate.k8s_validation import validate_manifest, validate_text
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
