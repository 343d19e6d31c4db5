"""The fake API server, driven through the real `kubernetes` client: if these pass, operator tests that use it
exercise the same requests and the same API conventions a real cluster would answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.fake_kube import FakeKube, Resource

GROUP, VERSION, PLURAL, NS = "tiergate.io", "v1alpha1", "moderationmodels", "default"
KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake


@pytest.fixture
def custom(kube: FakeKube) -> Iterator[client.CustomObjectsApi]:
    with kube.api_client() as api_client:
        yield client.CustomObjectsApi(api_client)


def model(name: str, spec: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModerationModel",
        "metadata": {"name": name, **metadata},
        "spec": spec if spec is not None else {"replicas": 1},
    }


def create(custom: client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    return custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)


def read(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)


def next_within(events: Iterator[Any], seconds: float = 5) -> Any:
    """next() on a watch that reconnects forever by itself: a regression must fail the test, not hang pytest."""
    box: list[Any] = []
    reader = threading.Thread(target=lambda: box.append(next(events)), daemon=True)
    reader.start()
    reader.join(seconds)
    assert box, f"no watch event within {seconds} s"
    return box[0]


def status_of(error: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    return json.loads(error.value.body)


def test_crud_round_trip(custom: client.CustomObjectsApi) -> None:
    created = create(custom, {**model("a"), "status": {"ready": True}})
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1 and meta["namespace"] == NS
    assert "status" not in created  # create cannot set a subresource status
    assert read(custom, "a") == created
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])
    created["spec"]["replicas"] = 3
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", created)
    assert replaced["spec"]["replicas"] == 3 and int(replaced["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    deleted = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a")
    assert deleted["metadata"]["uid"] == meta["uid"]
    with pytest.raises(ApiException) as missing:
        read(custom, "a")
    assert missing.value.status == 404
    assert status_of(missing) | {"message": ""} == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "",
        "reason": "NotFound",
        "code": 404,
        "details": {"name": "a", "kind": PLURAL},
    }


def test_create_conflicts_generate_name_and_invalid_names(custom: client.CustomObjectsApi) -> None:
    create(custom, model("a"))
    with pytest.raises(ApiException) as exists:
        create(custom, model("a"))
    assert exists.value.status == 409 and status_of(exists)["reason"] == "AlreadyExists"
    generated = {create(custom, model("", generateName="gen-"))["metadata"]["name"] for _ in range(3)}
    assert len(generated) == 3 and all(name.startswith("gen-") and len(name) == 9 for name in generated)
    with pytest.raises(ApiException) as invalid:
        create(custom, model("Upper_Case"))
    assert invalid.value.status == 422
    with pytest.raises(ApiException) as elsewhere:
        create(custom, model("b", namespace="other"))
    assert elsewhere.value.status == 400


def test_generation_bumps_only_on_spec_change(custom: client.CustomObjectsApi) -> None:
    create(custom, model("a"))
    labelled = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"metadata": {"labels": {"x": "1"}}})
    assert labelled["metadata"]["generation"] == 1 and labelled["metadata"]["labels"] == {"x": "1"}
    respecced = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"spec": {"replicas": 2}})
    assert respecced["metadata"]["generation"] == 2
    statused = custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "a", {"status": {"phase": "Ready"}})
    assert statused["metadata"]["generation"] == 2 and statused["status"] == {"phase": "Ready"}


def test_no_op_update_keeps_resource_version(kube: FakeKube, custom: client.CustomObjectsApi) -> None:
    created = create(custom, model("a"))
    same = custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", created)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"] == str(kube.resource_version)


def test_status_subresource_isolation(custom: client.CustomObjectsApi) -> None:
    created = create(custom, model("a"))
    with_status = custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "a", {**created, "spec": {"replicas": 9}, "status": {"phase": "Ready"}}
    )
    assert with_status["spec"] == {"replicas": 1} and with_status["status"] == {"phase": "Ready"}
    assert int(with_status["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    with_status["metadata"]["labels"] = {"via": "status"}
    relabelled = custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "a", with_status)
    assert "labels" not in relabelled["metadata"]
    main = custom.replace_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "a", {**with_status, "spec": {"replicas": 2}, "status": {"phase": "Broken"}}
    )
    assert main["spec"] == {"replicas": 2} and main["status"] == {"phase": "Ready"}


def test_stale_resource_version_is_a_conflict(custom: client.CustomObjectsApi) -> None:
    stale = create(custom, model("a"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"spec": {"replicas": 2}})
    attempts = [
        lambda: custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", stale),
        lambda: custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "a", {**stale, "status": {}}),
        lambda: custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"metadata": stale["metadata"]}),
        lambda: custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "a", {"metadata": stale["metadata"]}),
    ]
    for attempt in attempts:
        with pytest.raises(ApiException) as conflict:
            attempt()
        assert conflict.value.status == 409 and status_of(conflict)["reason"] == "Conflict"
    assert read(custom, "a")["spec"] == {"replicas": 2}


def test_custom_resource_put_needs_resource_version_and_missing_object_is_404(custom: client.CustomObjectsApi) -> None:
    create(custom, model("a"))
    with pytest.raises(ApiException) as unconditional:
        custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", model("a", {"replicas": 5}))
    assert unconditional.value.status == 422
    with pytest.raises(ApiException) as missing:
        custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "b", model("b"))
    assert missing.value.status == 404


def test_merge_patch_null_removes_keys(custom: client.CustomObjectsApi) -> None:
    create(custom, model("a", {"replicas": 1, "image": "x", "nested": {"keep": 1, "drop": 2}}, labels={"a": "1", "b": "2"}))
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "a", {"spec": {"image": None, "nested": {"drop": None}}, "metadata": {"labels": {"a": None}}}
    )
    assert patched["spec"] == {"replicas": 1, "nested": {"keep": 1}} and patched["metadata"]["labels"] == {"b": "2"}


def test_json_patch_and_strategic_merge_on_core_kinds(kube: FakeKube) -> None:
    with kube.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "1", "b": "2"})
        core.create_namespaced_config_map(NS, body)
        operations = [
            {"op": "test", "path": "/data/a", "value": "1"},
            {"op": "replace", "path": "/data/a", "value": "10"},
            {"op": "remove", "path": "/data/b"},
            {"op": "add", "path": "/metadata/labels", "value": {"k~/": "v"}},
        ]
        patched = core.patch_namespaced_config_map("cm", NS, operations)
        assert patched.data == {"a": "10"} and patched.metadata.labels == {"k~/": "v"}
        escaped = core.patch_namespaced_config_map("cm", NS, [{"op": "remove", "path": "/metadata/labels/k~0~1"}])
        assert escaped.metadata.labels is None
        with pytest.raises(ApiException) as failed:
            core.patch_namespaced_config_map("cm", NS, [{"op": "test", "path": "/data/a", "value": "1"}, *operations[1:2]])
        assert failed.value.status == 422 and core.read_namespaced_config_map("cm", NS).data == {"a": "10"}
        merged = core.patch_namespaced_config_map("cm", NS, {"data": {"c": "3"}})
        assert merged.data == {"a": "10", "c": "3"}
    content_types = [call.content_type for call in kube.calls if call.verb == "patch"]
    assert content_types == ["application/json-patch+json"] * 3 + ["application/strategic-merge-patch+json"]


def test_watch_streams_in_order_and_resumes(kube: FakeKube, custom: client.CustomObjectsApi) -> None:
    create(custom, model("before"))
    seen: list[tuple[str, str, str]] = []
    stream = watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, timeout_seconds=5)
    for event in stream:
        seen.append((event["type"], event["object"]["metadata"]["name"], event["object"]["metadata"]["resourceVersion"]))
        if len(seen) == 1:
            create(custom, model("x"))
            custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "x", {"spec": {"replicas": 2}})
            custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "x")
        if len(seen) == 4:
            break
    assert [(kind, name) for kind, name, _ in seen] == [("ADDED", "before"), ("ADDED", "x"), ("MODIFIED", "x"), ("DELETED", "x")]
    versions = [int(rv) for _, _, rv in seen]
    assert versions == sorted(versions) and len(set(versions)) == 4
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "before", {"spec": {"replicas": 7}})
    resumed = watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, resource_version=seen[2][2], timeout_seconds=5
    )
    later = []
    for event in resumed:
        later.append((event["type"], event["object"]["metadata"]["name"]))
        if len(later) == 2:
            break
    assert later == [("DELETED", "x"), ("MODIFIED", "before")]


def test_watch_client_resumes_after_server_timeout(kube: FakeKube, custom: client.CustomObjectsApi) -> None:
    created = create(custom, model("a"))
    kube.watch_timeout_s = 0.2
    events = watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL)
    first = next_within(events)
    assert first["type"] == "ADDED"
    deadline = time.monotonic() + 3
    while kube.open_watches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kube.open_watches == 0  # the server closed the first stream
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"spec": {"replicas": 4}})
    second = next_within(events)
    events.close()
    assert second["type"] == "MODIFIED" and second["object"]["spec"] == {"replicas": 4}
    watches = [call for call in kube.calls if call.verb == "watch"]
    assert len(watches) >= 2 and watches[1].query["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_watch_from_expired_resource_version_is_410() -> None:
    with FakeKube(history_limit=2) as kube, kube.api_client() as api_client:
        custom = client.CustomObjectsApi(api_client)
        first = create(custom, model("a"))
        for replicas in range(2, 6):
            custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"spec": {"replicas": replicas}})
        raw = custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            watch=True,
            resource_version=first["metadata"]["resourceVersion"],
            _preload_content=False,
            timeout_seconds=2,
        )
        lines = raw.data.decode().splitlines()
        error = json.loads(lines[0])
        assert len(lines) == 1 and error["type"] == "ERROR"
        assert (error["object"]["code"], error["object"]["reason"]) == (410, "Expired")
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NS,
            PLURAL,
            resource_version=first["metadata"]["resourceVersion"],
            _request_timeout=5,  # a regression fails instead of hanging
        )
        with pytest.raises(ApiException) as gone:
            next(stream)
        assert gone.value.status == 410
        kube.compact()
        latest = str(kube.resource_version)
        quiet = watch.Watch().stream(
            custom.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, resource_version=latest, timeout_seconds=0.3
        )
        assert list(quiet) == []  # the compacted point itself is still valid


def test_finalizers_delay_deletion_until_removed(kube: FakeKube, custom: client.CustomObjectsApi) -> None:
    create(custom, model("a", finalizers=["tiergate.io/cleanup"]))
    deleting = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a")
    assert deleting["metadata"]["deletionTimestamp"] and read(custom, "a")["metadata"]["finalizers"] == ["tiergate.io/cleanup"]
    again = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a")
    assert again["metadata"]["resourceVersion"] == deleting["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as forbidden:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "a", {"metadata": {"finalizers": ["x", "tiergate.io/cleanup"]}}
        )
    assert forbidden.value.status == 422
    updated = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"spec": {"replicas": 3}})
    assert updated["metadata"]["deletionTimestamp"] == deleting["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"metadata": {"finalizers": None}})
    assert kube.get(GROUP, VERSION, PLURAL, NS, "a") is None


def test_owner_reference_garbage_collection(kube: FakeKube, custom: client.CustomObjectsApi) -> None:
    owner = create(custom, model("owner"))
    other = create(custom, model("other"))

    def owned_by(*owners: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModerationModel",
                "name": o["metadata"]["name"],
                "uid": o["metadata"]["uid"],
            }
            for o in owners
        ]

    def isvc(name: str, refs: list[dict[str, Any]]) -> dict[str, Any]:
        body = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name, "ownerReferences": refs},
        }
        return custom.create_namespaced_custom_object(KSERVE[0], KSERVE[1], NS, KSERVE[2], body)

    child = isvc("child", owned_by(owner))
    isvc("shared", owned_by(owner, other))
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "grandchild", "namespace": NS, "ownerReferences": owned_by(child)},
    }
    kube.put(cm)
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "owner")
    assert kube.get(*KSERVE, NS, "child") is None
    assert kube.get("", "v1", "configmaps", NS, "grandchild") is None  # collected transitively
    assert kube.get(*KSERVE, NS, "shared") is not None  # another owner still exists
    isvc("orphan", owned_by(other))
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "other", propagation_policy="Orphan")
    assert kube.get(*KSERVE, NS, "orphan") is not None and kube.get(*KSERVE, NS, "shared") is not None


def test_events_through_core_api(kube: FakeKube) -> None:
    with kube.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="model-a."),
            involved_object=client.V1ObjectReference(kind="ModerationModel", name="a", namespace=NS),
            reason="Deployed",
            message="serving",
            type="Normal",
        )
        core.create_namespaced_event(NS, event)
        listed = core.list_namespaced_event(NS, field_selector="involvedObject.name=a")
        assert [(e.reason, e.involved_object.name) for e in listed.items] == [("Deployed", "a")]
        assert core.list_namespaced_event(NS, field_selector="involvedObject.name=b").items == []
    assert [e["reason"] for e in kube.events(NS)] == ["Deployed"] and kube.events("elsewhere") == []


def test_lease_create_read_replace_and_conflicts(kube: FakeKube) -> None:
    with kube.api_client() as api_client:
        leases = client.CoordinationV1Api(api_client)
        spec = client.V1LeaseSpec(holder_identity="pod-1", lease_duration_seconds=15)
        leases.create_namespaced_lease(NS, client.V1Lease(metadata=client.V1ObjectMeta(name="leader"), spec=spec))
        with pytest.raises(ApiException) as exists:
            leases.create_namespaced_lease(NS, client.V1Lease(metadata=client.V1ObjectMeta(name="leader"), spec=spec))
        assert exists.value.status == 409
        mine = leases.read_namespaced_lease("leader", NS)
        theirs = leases.read_namespaced_lease("leader", NS)
        mine.spec.holder_identity = "pod-2"
        renewed = leases.replace_namespaced_lease("leader", NS, mine)
        assert renewed.spec.holder_identity == "pod-2"
        theirs.spec.holder_identity = "pod-3"
        with pytest.raises(ApiException) as conflict:
            leases.replace_namespaced_lease("leader", NS, theirs)
        assert conflict.value.status == 409
        assert leases.read_namespaced_lease("leader", NS).spec.holder_identity == "pod-2"


def test_label_and_field_selectors(custom: client.CustomObjectsApi) -> None:
    create(custom, model("a", labels={"app": "tiergate", "tier": "fast"}))
    create(custom, model("b", labels={"app": "tiergate"}))
    create(custom, model("c", labels={"app": "other", "tier": "fast"}))

    def names(**selectors: str) -> list[str]:
        return [
            item["metadata"]["name"]
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, **selectors)["items"]
        ]

    assert names(label_selector="app=tiergate,tier") == ["a"]
    assert names(label_selector="app==tiergate,!tier") == ["b"]
    assert names(label_selector="app!=tiergate") == ["c"]
    assert names(label_selector="app in (tiergate, other),tier notin (slow)") == ["a", "b", "c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="tier=fast") == ["a", "c"]
    cluster = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector="tier=fast")
    assert [item["metadata"]["name"] for item in cluster["items"]] == ["a", "c"]


def test_watch_selector_sees_objects_leave_it(custom: client.CustomObjectsApi) -> None:
    create(custom, model("a", labels={"app": "tiergate"}))
    seen = []
    for event in watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, label_selector="app=tiergate", timeout_seconds=5
    ):
        seen.append(event["type"])
        if len(seen) == 1:
            create(custom, model("unrelated"))
            custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"metadata": {"labels": {"app": None}}})
        if len(seen) == 2:
            break
    assert seen == ["ADDED", "DELETED"]


def test_fail_next_injects_errors(custom: client.CustomObjectsApi, kube: FakeKube) -> None:
    create(custom, model("a"))
    kube.fail_next("GET", r"/moderationmodels/a$", 500, times=2)
    kube.fail_next("PATCH", r"/moderationmodels/a$", 409)
    for _ in range(2):
        with pytest.raises(ApiException) as failed:
            read(custom, "a")
        assert failed.value.status == 500 and status_of(failed)["reason"] == "InternalError"
    assert read(custom, "a")["metadata"]["name"] == "a"
    with pytest.raises(ApiException) as conflict:
        custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a", {"spec": {"replicas": 2}})
    assert conflict.value.status == 409 and read(custom, "a")["spec"] == {"replicas": 1}


def test_request_log_names_methods_paths_and_rbac_verbs(kube: FakeKube, custom: client.CustomObjectsApi) -> None:
    create(custom, model("a"))
    read(custom, "a")
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "a", {"status": {"phase": "Ready"}})
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"
    assert kube.requests == [("POST", base), ("GET", f"{base}/a"), ("PATCH", f"{base}/a/status")]
    assert kube.verbs() == {(GROUP, PLURAL, "create"), (GROUP, PLURAL, "get"), (GROUP, f"{PLURAL}/status", "patch")}


def test_unknown_resources_and_discovery(kube: FakeKube, custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as unknown:
        custom.list_namespaced_custom_object(GROUP, VERSION, NS, "widgets")
    assert unknown.value.status == 404
    with pytest.raises(ApiException) as no_status:
        custom.patch_namespaced_custom_object_status("coordination.k8s.io", "v1", NS, "leases", "x", {"status": {}})
    assert no_status.value.status == 404
    with kube.api_client() as api_client:
        assert client.VersionApi(api_client).get_code().git_version.startswith("v1.30")
        groups = {group.name for group in client.ApisApi(api_client).get_api_versions().groups}
        assert {"tiergate.io", "serving.kserve.io", "coordination.k8s.io"} <= groups
        resources = client.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION)
        assert {r.name for r in resources.resources} == {PLURAL, f"{PLURAL}/status"}


def test_direct_helpers_act_like_a_foreign_controller(kube: FakeKube, custom: client.CustomObjectsApi) -> None:
    create(custom, model("a"))
    isvc = kube.put(
        {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "a", "namespace": NS}}
    )
    events = watch.Watch().stream(custom.list_namespaced_custom_object, *KSERVE[:2], NS, KSERVE[2], timeout_seconds=5)
    assert next(events)["type"] == "ADDED"
    kube.patch_status(*KSERVE, NS, "a", {"url": "http://a", "conditions": [{"type": "Ready", "status": "True"}]})
    ready = next(events)
    events.close()
    assert ready["type"] == "MODIFIED" and ready["object"]["status"]["url"] == "http://a"
    assert int(ready["object"]["metadata"]["resourceVersion"]) > int(isvc["metadata"]["resourceVersion"])
    assert kube.patch_status(*KSERVE, NS, "a", {"url": None})["status"] == {"conditions": [{"type": "Ready", "status": "True"}]}
    assert [m["metadata"]["name"] for m in kube.list(GROUP, VERSION, PLURAL)] == ["a"] and kube.list(
        GROUP, VERSION, PLURAL, "x"
    ) == []


def test_stop_ends_a_blocked_watch_promptly() -> None:
    kube = FakeKube().start()
    seen: list[str] = []
    finished = threading.Event()

    def consume() -> None:
        with kube.api_client() as api_client:
            custom = client.CustomObjectsApi(api_client)
            for event in watch.Watch().stream(
                custom.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, timeout_seconds=60
            ):
                seen.append(event["type"])
        finished.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    deadline = time.monotonic() + 3
    while not kube.open_watches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kube.open_watches == 1
    started = time.monotonic()
    kube.stop()
    consumer.join(timeout=2)
    assert finished.is_set() and time.monotonic() - started < 2 and seen == []
    assert not any(thread.name == "fake-kube" for thread in threading.enumerate())


def test_list_then_watch_from_the_list_resource_version(custom: client.CustomObjectsApi) -> None:
    create(custom, model("old"))
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    create(custom, model("new"))
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        NS,
        PLURAL,
        resource_version=listed["metadata"]["resourceVersion"],
        timeout_seconds=5,
    )
    first = next(stream)
    stream.close()
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "new")


def test_cluster_scoped_resources_and_other_namespaces() -> None:
    resources = [
        Resource("", "v1", "namespaces", "Namespace", namespaced=False),
        Resource("", "v1", "configmaps", "ConfigMap", has_status=False),
    ]
    with FakeKube(resources) as kube, kube.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team-a")))
        phase = core.patch_namespace_status("team-a", {"status": {"phase": "Active"}})
        assert phase.status.phase == "Active" and core.read_namespace("team-a").metadata.name == "team-a"
        for namespace in ("team-a", "team-b"):
            core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm")))
        assert sorted(cm.metadata.namespace for cm in core.list_config_map_for_all_namespaces().items) == ["team-a", "team-b"]
        assert [ns.metadata.name for ns in core.list_namespace().items] == ["team-a"]
        with pytest.raises(ApiException) as unknown:
            core.list_namespaced_secret("team-a")
        assert unknown.value.status == 404
