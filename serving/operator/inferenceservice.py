"""The InferenceService the operator owns: what it should be, and what KServe says it is.

Pure functions over plain dicts, so every rollout step is testable without a cluster. The body is
what the serving chart used to render (same runtime, env, resources), plus the two things only a
rollout controller can set: `canaryTrafficPercent` and tag routing, which gives the newest revision
its own URL for the live regression vectors whatever share of traffic it carries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tiergate.moderation_model import API_VERSION, KIND, ModerationModelSpec, VersionRef

ISVC_GROUP = "serving.kserve.io"
ISVC_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
VERSION_ANNOTATION = "tiergate.io/model-version"
DIGEST_ANNOTATION = "tiergate.io/repository-digest"
# The last verified, promoted version (what traffic falls back to), kept on the service too: a status
# that loses its memory is read back from here (controller.recover_current), never guessed.
STABLE_VERSION_ANNOTATION = "tiergate.io/stable-version"
STABLE_URI_ANNOTATION = "tiergate.io/stable-storage-uri"
STABLE_DIGEST_ANNOTATION = "tiergate.io/stable-digest"
STABLE_GATE_ANNOTATION = "tiergate.io/stable-gate-digest"
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
CANARY_TAG = "latest"


def owner_reference(resource: dict[str, Any]) -> dict[str, Any]:
    """Makes the InferenceService garbage-collected with its ModerationModel (and marks it ours)."""
    metadata = resource["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_owned_by(isvc: dict[str, Any], resource: dict[str, Any]) -> bool:
    uid = resource["metadata"].get("uid")
    return any(ref.get("uid") == uid for ref in isvc.get("metadata", {}).get("ownerReferences") or [])


def _resources(spec: ModerationModelSpec) -> dict[str, Any]:
    requests = dict(spec.serving.resources.requests)
    limits = dict(spec.serving.resources.limits)
    if spec.serving.gpu > 0:
        requests["nvidia.com/gpu"] = str(spec.serving.gpu)
        limits["nvidia.com/gpu"] = str(spec.serving.gpu)
    return {"requests": requests, "limits": limits}


def _environment(spec: ModerationModelSpec, version: VersionRef) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        # checked by the runtime's entrypoint (`tiergate repository verify`) before Triton loads anything
        {"name": "TIERGATE_EXPECTED_DIGEST", "value": version.digest},
    ]
    if spec.serving.gate_key_secret:
        env.append(
            {
                "name": "TIERGATE_GATE_KEY",
                "valueFrom": {"secretKeyRef": {"name": spec.serving.gate_key_secret, "key": "key"}},
            }
        )
    env.append({"name": "TIERGATE_OPTIONAL_DISABLED", "value": json.dumps(spec.serving.optional_disabled)})
    return env


def stable_annotations(stable: VersionRef) -> dict[str, str]:
    return {
        STABLE_VERSION_ANNOTATION: stable.version,
        STABLE_URI_ANNOTATION: stable.storage_uri,
        STABLE_DIGEST_ANNOTATION: stable.digest,
        STABLE_GATE_ANNOTATION: stable.gate_digest,
    }


def desired_body(
    resource: dict[str, Any],
    spec: ModerationModelSpec,
    version: VersionRef,
    canary_percent: int | None,
    stable: VersionRef | None = None,
) -> dict[str, Any]:
    """The whole InferenceService serving `version`; `canary_percent` None means all traffic to it.
    `stable` is the verified version traffic falls back to (recorded in annotations)."""
    name = resource["metadata"]["name"]
    annotations = {
        VERSION_ANNOTATION: version.version,
        DIGEST_ANNOTATION: f"sha256:{version.digest}",
        TAG_ROUTING_ANNOTATION: "true",
    }
    if stable is not None:
        annotations |= stable_annotations(stable)
    if spec.serving.prometheus_scraping:
        annotations["serving.kserve.io/enable-prometheus-scraping"] = "true"
    predictor: dict[str, Any] = {
        "minReplicas": spec.serving.min_replicas,
        "maxReplicas": spec.serving.max_replicas,
        "scaleMetric": spec.serving.scale_metric,
        "scaleTarget": spec.serving.scale_target,
        # Neither the gateway nor Triton calls the Kubernetes API.
        "automountServiceAccountToken": False,
        "model": {
            "modelFormat": {"name": "triton", "version": "2"},
            "runtime": spec.serving.runtime,
            "protocolVersion": "v2",
            "storageUri": version.storage_uri,
            "env": _environment(spec, version),
            "resources": _resources(spec),
        },
    }
    if spec.serving.service_account_name:
        predictor["serviceAccountName"] = spec.serving.service_account_name
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {
        "apiVersion": f"{ISVC_GROUP}/{ISVC_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": resource["metadata"]["namespace"],
            "labels": {
                "app.kubernetes.io/name": "tiergate",
                "app.kubernetes.io/managed-by": "tiergate-operator",
                "tiergate.io/moderation-model": name,
            },
            "annotations": annotations,
            "ownerReferences": [owner_reference(resource)],
        },
        "spec": {"predictor": predictor},
    }


def merge_patch(observed: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any] | None:
    """The merge patch (RFC 7386) taking `observed`'s labels, annotations and spec to `desired`'s; None if equal.

    Keys the operator does not set (KServe's own defaults, other controllers' annotations) are left alone;
    `canaryTrafficPercent` is the one key it removes, by patching it to null.
    """
    patch: dict[str, Any] = {}
    metadata = {}
    for key in ("labels", "annotations"):
        wanted = desired["metadata"].get(key) or {}
        have = _mapping(_mapping(observed.get("metadata")).get(key))
        changed = {name: value for name, value in wanted.items() if have.get(name) != value}
        if changed:
            metadata[key] = changed
    if metadata:
        patch["metadata"] = metadata
    observed_predictor = _mapping(_mapping(observed.get("spec")).get("predictor"))
    predictor = _diff(observed_predictor, desired["spec"]["predictor"])
    if "canaryTrafficPercent" in observed_predictor and "canaryTrafficPercent" not in desired["spec"]["predictor"]:
        predictor["canaryTrafficPercent"] = None
    if predictor:
        patch["spec"] = {"predictor": predictor}
    return patch or None


def _diff(have: Any, want: Any) -> Any:
    """What of `want` differs from `have`: nested dicts recursively, anything else whole."""
    changed: dict[str, Any] = {}
    for key, value in want.items():
        current = have.get(key) if isinstance(have, dict) else None
        if isinstance(value, dict) and isinstance(current, dict):
            inner = _diff(current, value)
            if inner:
                changed[key] = inner
        elif current != value:
            changed[key] = value
    return changed


@dataclass(frozen=True)
class Observed:
    """What KServe reports about the InferenceService, reduced to what a rollout decides on."""

    exists: bool
    storage_uri: str | None = None
    canary_percent: int | None = None
    ready: bool = False  # the newest revision is ready and KServe has reconciled the current spec
    latest_percent: int | None = None  # traffic on the newest revision
    canary_url: str | None = None  # the newest revision's own URL (tag routing), else the service's
    message: str = ""


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _percent(value: Any) -> int:
    """A traffic share as KServe reports it; anything that is not 0..100 counts as none."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100 else 0


def observe(isvc: dict[str, Any] | None) -> Observed:
    """Defensive on purpose: the status is written by another controller (or by hand); nothing in it may
    crash a reconcile, and anything unreadable reads as "not ready"."""
    if not isvc:
        return Observed(exists=False)
    predictor_spec = _mapping(_mapping(isvc.get("spec")).get("predictor"))
    status = _mapping(isvc.get("status"))
    component = _mapping(_mapping(status.get("components")).get("predictor"))
    conditions = {item.get("type"): item for item in _dicts(status.get("conditions"))}
    reconciled = status.get("observedGeneration") == _mapping(isvc.get("metadata")).get("generation")
    latest_ready = component.get("latestReadyRevision")
    newest_ready = bool(latest_ready) and latest_ready == component.get("latestCreatedRevision")
    ready_condition = conditions.get("PredictorReady") or conditions.get("Ready") or {}
    latest_ready = latest_ready if isinstance(latest_ready, str) else None
    ready = reconciled and newest_ready and ready_condition.get("status") == "True"
    latest_percent, canary_url = None, None
    for target in _dicts(component.get("traffic")):
        if target.get("latestRevision") is True or target.get("revisionName") == latest_ready:
            latest_percent = (latest_percent or 0) + _percent(target.get("percent"))
        if target.get("tag") == CANARY_TAG and isinstance(target.get("url"), str):
            canary_url = target["url"]
    canary_url = canary_url or _text(component.get("url")) or _text(status.get("url"))
    failing = [item for item in conditions.values() if item.get("status") == "False" and _text(item.get("message"))]
    canary = predictor_spec.get("canaryTrafficPercent")
    return Observed(
        exists=True,
        storage_uri=_text(_mapping(predictor_spec.get("model")).get("storageUri")),
        canary_percent=canary if isinstance(canary, int) and not isinstance(canary, bool) else None,
        ready=ready,
        latest_percent=latest_percent,
        canary_url=canary_url,
        message="; ".join(f"{item['type']}: {item['message']}" for item in failing)[:300],
    )


def cluster_local(url: str, namespace: str) -> str:
    """The in-cluster address of a Knative route URL: `<first label>.<namespace>.svc.cluster.local`.

    KServe reports the external domain (e.g. `latest-tiergate-predictor.ns.example.com`), which an
    operator pod often cannot resolve; Knative gives every route and tag the same name in-cluster.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").split(".")[0]
    port = f":{parts.port}" if parts.port else ""
    return f"http://{host}.{namespace}.svc.cluster.local{port}"
