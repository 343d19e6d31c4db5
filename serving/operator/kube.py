"""The operator's Kubernetes API: exactly the calls it makes, on the pinned `kubernetes` client.

Every resource but Events goes through the generic custom-objects paths (plain dicts, merge
patches), so this file is the whole list of verbs the operator chart's RBAC grants: ModerationModels
get/list/watch/update/patch, their status update, InferenceServices get/list/watch/create/patch/
delete, Events create, Leases get/create/update.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tiergate.moderation_model import GROUP, KIND, PLURAL, VERSION
from tiergate.serving.operator.inferenceservice import ISVC_GROUP, ISVC_PLURAL, ISVC_VERSION

log = logging.getLogger(__name__)

COMPONENT = "tiergate-operator"


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): read again and decide again."""


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str


MODELS = Kind(GROUP, VERSION, PLURAL)
SERVICES = Kind(ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL)
LEASES = Kind("coordination.k8s.io", "v1", "leases")


def _missing_is_none(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
    try:
        return dict(call(*args, **kwargs))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _conflict_as(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return dict(call(*args, **kwargs))
    except ApiException as error:
        if error.status == 409:
            raise Conflict(str(error.reason)) from None
        raise


class Kube:
    def __init__(self, api_client: client.ApiClient, request_timeout_s: float = 30.0):
        self.objects = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.timeout = request_timeout_s

    # --- any kind (ModerationModels, InferenceServices, Leases) -------------------------------------------
    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        return _missing_is_none(
            self.objects.get_namespaced_custom_object,
            kind.group, kind.version, namespace, kind.plural, name, _request_timeout=self.timeout,
        )  # fmt: skip

    def list_objects(self, kind: Kind, namespace: str | None) -> tuple[list[dict[str, Any]], str]:
        """Items and the list's resourceVersion (where a watch resumes)."""
        if namespace:
            answer = self.objects.list_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, _request_timeout=self.timeout
            )
        else:
            answer = self.objects.list_cluster_custom_object(kind.group, kind.version, kind.plural, _request_timeout=self.timeout)
        return list(answer.get("items") or []), str(answer.get("metadata", {}).get("resourceVersion", ""))

    def watch(self, kind: Kind, namespace: str | None, resource_version: str, timeout_s: int) -> Iterator[dict[str, Any]]:
        """Events after `resource_version` until the server closes the stream (`timeout_s`)."""
        stream = watch.Watch()
        args: tuple[str, ...]
        if namespace:
            call, args = self.objects.list_namespaced_custom_object, (kind.group, kind.version, namespace, kind.plural)
        else:
            call, args = self.objects.list_cluster_custom_object, (kind.group, kind.version, kind.plural)
        try:
            yield from stream.stream(call, *args, resource_version=resource_version, timeout_seconds=timeout_s)
        finally:
            stream.stop()

    def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return _conflict_as(
            self.objects.create_namespaced_custom_object,
            kind.group, kind.version, namespace, kind.plural, body, _request_timeout=self.timeout,
        )  # fmt: skip

    def replace(self, kind: Kind, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT with the body's resourceVersion: Conflict when someone else wrote first."""
        return _conflict_as(
            self.objects.replace_namespaced_custom_object,
            kind.group, kind.version, namespace, kind.plural, name, body, _request_timeout=self.timeout,
        )  # fmt: skip

    def patch(self, kind: Kind, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch (RFC 7386); with metadata.resourceVersion in it, Conflict when stale."""
        return _conflict_as(
            self.objects.patch_namespaced_custom_object,
            kind.group, kind.version, namespace, kind.plural, name, patch, _request_timeout=self.timeout,
        )  # fmt: skip

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        _missing_is_none(
            self.objects.delete_namespaced_custom_object,
            kind.group, kind.version, namespace, kind.plural, name, _request_timeout=self.timeout,
        )  # fmt: skip

    # --- ModerationModel status and finalizers ---------------------------------------------------------------
    def write_status(self, model: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Replace the status subresource, guarded by the resourceVersion the decision was made on."""
        metadata = model["metadata"]
        body = {"apiVersion": model["apiVersion"], "kind": KIND, "metadata": metadata, "status": status}
        return _conflict_as(
            self.objects.replace_namespaced_custom_object_status,
            GROUP, VERSION, metadata["namespace"], PLURAL, metadata["name"], body, _request_timeout=self.timeout,
        )  # fmt: skip

    def set_finalizers(self, model: dict[str, Any], finalizers: list[str]) -> dict[str, Any]:
        metadata = model["metadata"]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": metadata["resourceVersion"]}}
        return self.patch(MODELS, metadata["namespace"], metadata["name"], patch)

    # --- Events -----------------------------------------------------------------------------------------------
    def event(self, model: dict[str, Any], kind: str, reason: str, message: str, instance: str) -> None:
        """A core/v1 Event on the ModerationModel (`kubectl describe mm` and the Argo CD UI show it)."""
        metadata = model["metadata"]
        now = datetime.now(UTC)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
            "involvedObject": {
                "apiVersion": model["apiVersion"],
                "kind": KIND,
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "count": 1,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": instance,
        }
        try:
            self.core.create_namespaced_event(metadata["namespace"], body, _request_timeout=self.timeout)
        except ApiException as error:  # an event is a courtesy: never fail a rollout step for it
            log.warning("could not record event %s on %s: HTTP %s", reason, metadata["name"], error.status)


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """A client from `kubeconfig` (or $KUBECONFIG, ~/.kube/config), else the pod's service account.

    Raises ConfigError (one line) when neither is there, instead of the client's long traceback.
    """
    import logging
    import os

    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    from tiergate.errors import ConfigError

    configuration = client.Configuration()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)  # the loader logs its own errors (an exec plugin missing) before raising them
    try:
        if kubeconfig or context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError, TypeError, ValueError) as error:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConfigError(f"no usable Kubernetes credentials ({where}): {' '.join(str(error).split())[:300]}") from None
    finally:
        root.setLevel(level)
    return client.ApiClient(configuration)
