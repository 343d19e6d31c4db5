"""Validate manifests against the real KServe CRD schemas, tiergate's own CRD and the Kubernetes core types.

KServe kinds are checked with the OpenAPI v3 schema embedded in the CRD, vendored in the
package (`tiergate/vendor/kserve`, README there names the KServe commit) so that the check
runs the same on a clone and in the promote image; the ModerationModel with the schema of
tiergate's own CRD (`tiergate/crds`, package data as well), the same way; core kinds with
kubernetes-validate. There is no API server here, so this is as real as it gets. A KServe or
tiergate kind without a schema, or a schema file that is missing, is a ManifestError: a check
that silently does not run would let an invalid resource reach the GitOps repository.
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
# tiergate's own CRDs (the operator's contract: tiergate/moderation_model.py), shipped in the package.
TIERGATE_CRD_DIR = Path(str(importlib.resources.files("tiergate"))) / "crds"
TIERGATE_GROUP = "tiergate.io"
TIERGATE_CRDS = {
    ("tiergate.io", "ModerationModel"): "tiergate.io_moderationmodels.yaml",
}
KUBERNETES_VERSION = "1.30.0"


@cache
def crd_schema(group: str, kind: str, version: str, crd_dir: Path | None = None) -> dict[str, Any]:
    """The openAPIV3Schema of `kind` at `version`; `crd_dir` replaces the packaged folder (tests)."""
    if group == TIERGATE_GROUP:
        files, default_dir, owner = TIERGATE_CRDS, TIERGATE_CRD_DIR, "tiergate"
    else:
        files, default_dir, owner = KSERVE_CRDS, CRD_DIR, "KServe"
    if (group, kind) not in files:
        known = ", ".join(sorted(name for _, name in files))
        raise ManifestError(f"{group}/{kind}: no vendored {owner} schema to validate it against (known: {known})")
    path = Path(crd_dir or default_dir) / files[(group, kind)]
    if not path.is_file():
        raise ManifestError(f"{owner} CRD schema {path} is missing: this tiergate installation is incomplete (reinstall it)")
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
    if group in (KSERVE_GROUP, TIERGATE_GROUP):
        schema = crd_schema(group, kind, version)
        # metadata is ObjectMeta whatever the CRD declares of it (tiergate's only constrains the name):
        # its other fields (labels, annotations) are the API server's, not unknown ones.
        unknown = unknown_fields({key: value for key, value in document.items() if key != "metadata"}, schema)
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
