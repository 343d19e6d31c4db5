"""Rendering the project's Helm charts in tests: real Helm (helm-python-sdk), every object validated.

Shared by the serving chart's tests (tests/unit/test_chart_security.py) and the operator chart's
(tests/unit/test_operator_chart.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from helm_python import Chart

from tiergate.k8s_validation import validate_text

# The container securityContext every chart's pods run with (the images' UID/GID 1000).
HARDENED = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` merged into a copy of `base`, maps recursively (as Helm merges values into the defaults)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render_documents(chart: Path, values: dict[str, Any], name: str, namespace: str) -> list[dict[str, Any]]:
    """Every object the chart renders (templates only: Helm keeps crds/ apart), each validated on the way
    (tiergate.k8s_validation: the vendored CRDs for KServe and tiergate kinds, the Kubernetes types for the rest)."""
    rendered = Chart.load(str(chart)).render(values, name=name, namespace=namespace)
    documents: list[dict[str, Any]] = []
    for file_name, text in sorted(rendered.items()):
        if file_name.endswith(".yaml") and text.strip():
            validate_text(text)
            documents += [document for document in yaml.safe_load_all(text) if document]
    return documents


def operator_inferenceservice(moderation_model: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The InferenceService the operator makes of a rendered ModerationModel once its version is promoted
    (serving/operator/inferenceservice.py: the same code, all traffic on the spec's version)."""
    from tiergate.moderation_model import VersionRef, parse_spec
    from tiergate.serving.operator.inferenceservice import desired_body

    resource = copy.deepcopy(moderation_model)
    resource["metadata"].update(namespace=namespace, uid="00000000-0000-4000-8000-000000000000")
    spec = parse_spec(resource)
    return desired_body(resource, spec, VersionRef.of(spec.model), None)
