"""Validate manifests against the real KServe CRD schemas and the Kubernetes core types.

KServe kinds are checked with the OpenAPI v3 schema embedded in the CRD, vendored in the
package (`tiergate/vendor/kserve`, README there names the KServe commit) so that the check
runs the same on a clone and in the promote image; core kinds with kubernetes-validate.
There is no API server here, so this is as real as it gets. A KServe kind without a vendored
schema, or a schema file that is missing, is a ManifestError: a check that silently does
not run would let an invalid InferenceService reach the GitOps repository.
"""

from __future__ import annotations

import importlib.resources
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tiergate.errors import ManifestError

CRD_DIR = Path(str(importlib.resources.files("tiergate"))) / "vendor" / "kserve"
KSERVE_GROUP = "serving.kserve.io"
KSERVE_CRDS = {
    ("serving.kserve.io", "InferenceService"): "serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io", "ServingRuntime"): "serving.kserve.io_servingruntimes.yaml",
    ("serving.kserve.io", "ClusterServingRuntime"): "serving.kserve.io_clusterservingruntimes.yaml",
}
KUBERNETES_VERSION = "1.30.0"


@cache
def crd_schema(group: str, kind: str, version: str, crd_dir: Path = CRD_DIR) -> dict[str, Any]:
    if (group, kind) not in KSERVE_CRDS:
        known = ", ".join(sorted(name for _, name in KSERVE_CRDS))
        raise ManifestError(f"{group}/{kind}: no vendored KServe schema to validate it against (known: {known})")
    path = Path(crd_dir) / KSERVE_CRDS[(group, kind)]
    if not path.is_file():
        raise ManifestError(f"KServe CRD schema {path} is missing: this tiergate installation is incomplete (reinstall it)")
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return dict(entry["schema"]["openAPIV3Schema"])
    raise ManifestError(f"{kind} has no version {version} in {path.name}")


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not declare: what `kubectl apply --validate=strict` rejects."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}/{key}"
            if properties is not None and key in properties:
                found += unknown_fields(item, properties[key], where)
            elif isinstance(extra, dict):
                found += unknown_fields(item, extra, where)
            elif properties is not None and extra is not True:
                found.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}/{index}")
    return found


def validate_manifest(document: dict[str, Any]) -> None:
    """Raise ManifestError naming the path of the first problem."""
    api_version, kind = document.get("apiVersion", ""), document.get("kind", "")
    group, _, version = api_version.rpartition("/")
    if group == KSERVE_GROUP:
        schema = crd_schema(group, kind, version)
        unknown = unknown_fields(document, schema)
        if unknown:
            raise ManifestError(f"{kind} {document.get('metadata', {}).get('name')}: unknown field(s) {', '.join(unknown)}")
        validator = jsonschema.Draft7Validator(schema)
        errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
        if errors:
            where = "/".join(str(part) for part in errors[0].absolute_path)
            raise ManifestError(f"{kind} {document.get('metadata', {}).get('name')}: {where}: {errors[0].message}")
        return
    if group == "argoproj.io" and kind == "Application":
        spec = document.get("spec") or {}
        missing = [key for key in ("project", "source", "destination") if key not in spec]
        if missing or not {"repoURL", "path"} <= set(spec.get("source", {})):
            raise ManifestError(
                f"Application {document.get('metadata', {}).get('name')}: missing {missing or 'source.repoURL/path'}"
            )
        return
    import kubernetes_validate

    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise ManifestError(f"{kind} {document.get('metadata', {}).get('name')}: {error.message}") from None


def validate_text(text: str) -> int:
    """Validate every document in a multi-document YAML string; returns how many were checked."""
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    for document in documents:
        validate_manifest(document)
    return len(documents)
