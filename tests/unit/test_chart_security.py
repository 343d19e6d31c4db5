"""The serving chart's security properties, rendered with real Helm (helm-python-sdk).

Every rendered object validates against the vendored KServe CRDs, tiergate's ModerationModel CRD
and the Kubernetes core types (tiergate.k8s_validation); then the properties a template edit could silently lose are asserted
one by one: the gateway as the pod's only front door, Triton on loopback, the admin key from a
Secret, non-root read-only containers, the canary-health probes with the values' thresholds, the
ModerationModel the operator acts on (values mapped, parsed by the operator's own model), the
NetworkPolicy's peers and ports (the operator's pods among them), the regression Job's limits. Knative's own admission rules for
a revision's container (one port named http1/h2c, reserved mount paths, the securityContext
fields it accepts) are checked here too: the KServe CRD schema accepts what Knative then rejects.

`python -m tests.unit.test_chart_security --write` regenerates manifests/kserve/ from the chart.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_python import Chart, HelmError
from helm_python.chart import lint

from tests.helm_helpers import HARDENED, merged, render_documents
from tiergate.paths import PROJECT_ROOT

CHART = PROJECT_ROOT / "charts" / "tiergate-serving"
VALUES: dict[str, Any] = {
    "model": {"version": "v1", "storageUri": "s3://models/tiergate/v1/" + "a" * 64, "digest": "a" * 64, "gateDigest": "c" * 64}
}
NAMESPACE = "moderation"

# Knative Serving's admission webhook (pkg/apis/serving/k8s_validation.go): what a KServe
# Serverless predictor's container may carry.
KNATIVE_PORT_NAMES = {"", "http1", "h2c"}
KNATIVE_RESERVED_PATHS = {"/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"}
KNATIVE_CONTAINER_SECURITY_FIELDS = {
    "allowPrivilegeEscalation",
    "capabilities",
    "readOnlyRootFilesystem",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "seccompProfile",
}
KNATIVE_QUEUE_PROXY_PORTS = {8012, 8013, 8022, 9090, 9091}



def render(extra: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The chart's objects by kind (each kind appears once), every one validated on the way."""
    objects: dict[str, dict[str, Any]] = {}
    for document in render_documents(CHART, merged(VALUES, extra or {}), name="tiergate", namespace=NAMESPACE):
        assert document["kind"] not in objects, f"two {document['kind']}s"
        objects[document["kind"]] = document
    return objects


def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = objects["ServingRuntime"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def chain(runtime: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(verify, gateway, tritonserver) parts of the container's process chain."""
    argv = [*runtime["command"], *runtime["args"]]
    first = argv.index("--")
    second = argv.index("--", first + 1)
    return argv[:first], argv[first + 1 : second], argv[second + 1 :]


def option(argv: list[str], name: str) -> str:
    """The value of `--name value` or `--name=value` (exactly one occurrence)."""
    found = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]
    found += [arg.split("=", 1)[1] for arg in argv if arg.startswith(name + "=")]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    return render()


def test_default_render_is_four_valid_objects_and_lints(objects: dict[str, dict[str, Any]]) -> None:
    assert sorted(objects) == ["Job", "ModerationModel", "NetworkPolicy", "ServingRuntime"]
    assert lint(str(CHART), VALUES)["errors"] == []


def test_process_chain_is_verify_then_gateway_then_triton_on_loopback(objects: dict[str, dict[str, Any]]) -> None:
    verify, gateway, triton = chain(container(objects))
    assert verify == ["tiergate", "repository", "verify", "/mnt/models"]
    assert gateway[:2] == ["tiergate", "gateway"] and triton[0] == "tritonserver"
    assert option(gateway, "--listen") == "0.0.0.0:8080"
    assert option(gateway, "--model") == objects["ModerationModel"]["metadata"]["name"]
    assert option(gateway, "--max-request-bytes") == "4194304"
    assert option(gateway, "--admin-key-env") == "TIERGATE_ADMIN_KEY"
    # The gateway's upstream is Triton's HTTP, and only the gateway (and metrics) leave the pod.
    assert option(gateway, "--upstream") == f"{option(triton, '--http-address')}:{option(triton, '--http-port')}"
    assert option(triton, "--http-address") == "127.0.0.1" and option(triton, "--grpc-address") == "127.0.0.1"
    assert option(triton, "--metrics-address") == "0.0.0.0" and option(triton, "--metrics-port") == "8002"
    assert option(triton, "--model-store") == "/mnt/models" and option(triton, "--strict-readiness") == "true"


def test_rendered_gateway_arguments_parse_with_the_real_command(objects: dict[str, dict[str, Any]]) -> None:
    """Every option the chart passes exists in `tiergate gateway` and its value is accepted (parsed, not run)."""
    import typer

    from tiergate.cli import gateway_cmd

    app = typer.Typer()
    app.command()(gateway_cmd.gateway)
    command = typer.main.get_command(app)
    _, gateway, triton = chain(container(objects))
    context = command.make_context("gateway", [*gateway[2:], "--", *triton])
    assert context.params["command"] == triton
    assert context.params["max_request_bytes"] == 4194304 and context.params["health_failures"] == 3
    assert context.params["admin_key_env"] == "TIERGATE_ADMIN_KEY"
    # overload is not death: busy canaries end the pod only after busyLimitSeconds; slow bodies and too many requests are bounded
    assert context.params["health_busy_limit_s"] == 300 and context.params["body_timeout_s"] == 30
    assert context.params["max_connections"] == 64


def test_busy_limit_body_timeout_and_connection_cap_come_from_values() -> None:
    extra = {"serving": {"bodyTimeoutSeconds": 7, "maxConnections": 9, "health": {"busyLimitSeconds": 600}}}
    _, gateway, _ = chain(container(render(extra)))
    assert option(gateway, "--health-busy-limit-s") == "600"
    assert option(gateway, "--body-timeout-s") == "7" and option(gateway, "--max-connections") == "9"


HOSTILE_IMAGE = "ghcr.io/x/y:1\n      stdin: true\n      securityContext: {privileged: yes}"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"runtime": {"image": HOSTILE_IMAGE}}, "image"),
        ({"regressionTest": {"image": HOSTILE_IMAGE}}, "image"),
        ({"runtime": {"image": "Not An Image"}}, "image"),
        ({"runtime": {"name": "tiergate\nstdin: true"}}, "name"),
        ({"runtime": {"name": "Upper"}}, "name"),
        ({"predictor": {"serviceAccountName": "sa\n    hostNetwork: true"}}, "serviceAccountName"),
    ],
)
def test_schema_refuses_yaml_injection_in_names_and_images(extra: dict[str, Any], key: str) -> None:
    with pytest.raises(HelmError) as caught:
        Chart.load(str(CHART)).render(merged(VALUES, extra), name="tiergate", namespace=NAMESPACE)
    assert key in str(caught.value)


def test_string_values_are_quoted_even_past_the_schema(tmp_path: Path) -> None:
    """Without the schema (a forked chart, a schema bug) a hostile value stays one string: no injected key."""
    import shutil

    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()
    hostile = {
        "runtime": {"image": HOSTILE_IMAGE, "name": "rt\nstdin: true"},
        "regressionTest": {"image": HOSTILE_IMAGE},
        "predictor": {"serviceAccountName": "sa\n    hostNetwork: true"},
    }
    rendered = Chart.load(str(chart)).render(merged(VALUES, hostile), name="tiergate", namespace=NAMESPACE)
    texts = [text for name, text in rendered.items() if name.endswith(".yaml") and text.strip()]
    documents = [doc for text in texts for doc in yaml.safe_load_all(text) if doc]
    kinds = {doc["kind"]: doc for doc in documents}
    runtime = kinds["ServingRuntime"]["spec"]["containers"][0]
    assert runtime["image"] == HOSTILE_IMAGE and "stdin" not in runtime
    assert "privileged" not in str(runtime.get("securityContext"))
    assert kinds["ServingRuntime"]["metadata"]["name"] == "rt\nstdin: true"
    job = kinds["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["image"] == HOSTILE_IMAGE and "stdin" not in job
    serving = kinds["ModerationModel"]["spec"]["serving"]
    assert serving["serviceAccountName"] == "sa\n    hostNetwork: true" and "hostNetwork" not in serving


def test_triton_restricted_apis_need_the_admin_header_the_gateway_sends(objects: dict[str, dict[str, Any]]) -> None:
    from tiergate.serving.gateway import ADMIN_HEADER

    runtime = container(objects)
    _, _, triton = chain(runtime)
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        apis, _, setting = option(triton, flag).partition(":")
        assert set(apis.split(",")) == {"model-repository", "statistics", "trace", "logging", "shared-memory"}
        assert setting == f"{ADMIN_HEADER}=$(TIERGATE_ADMIN_KEY)"
    env = {item["name"]: item for item in runtime["env"]}
    assert env["TIERGATE_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "tiergate-admin-key", "key": "key"}
    # Kubernetes leaves an undefined $(VAR) as the literal text: Triton would then accept a guessable key.
    referenced = {name for arg in runtime["args"] for name in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg)}
    assert referenced and referenced <= set(env)
    rendered = render({"serving": {"adminKeySecret": "prod-admin"}})
    secret = {item["name"]: item for item in container(rendered)["env"]}["TIERGATE_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "prod-admin", "key": "key"}


def test_one_http1_port_and_prometheus_annotations(objects: dict[str, dict[str, Any]]) -> None:
    """Knative allows a single container port; it is the gateway (HTTP/1.1), never Triton's gRPC."""
    runtime = container(objects)
    assert runtime["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert objects["ServingRuntime"]["spec"]["annotations"] == {
        "prometheus.kserve.io/port": "8002",
        "prometheus.kserve.io/path": "/metrics",
    }
    assert objects["ServingRuntime"]["spec"]["protocolVersions"] == ["v2"]
    # The operator sets serving.kserve.io/enable-prometheus-scraping on its InferenceService from this.
    assert objects["ModerationModel"]["spec"]["serving"]["prometheusScraping"] is True
    off = render({"serving": {"prometheusScraping": False}})["ModerationModel"]
    assert off["spec"]["serving"]["prometheusScraping"] is False


def test_serving_container_is_non_root_read_only_and_knative_admissible(objects: dict[str, dict[str, Any]]) -> None:
    runtime = container(objects)
    assert runtime["securityContext"] == HARDENED
    assert set(runtime["securityContext"]) <= KNATIVE_CONTAINER_SECURITY_FIELDS
    assert len(runtime["ports"]) == 1 and runtime["ports"][0].get("name", "") in KNATIVE_PORT_NAMES
    assert runtime["ports"][0]["containerPort"] not in KNATIVE_QUEUE_PROXY_PORTS
    mounts = {mount["mountPath"]: mount["name"] for mount in runtime["volumeMounts"]}
    assert not set(mounts) & KNATIVE_RESERVED_PATHS
    volumes = {volume["name"]: volume for volume in objects["ServingRuntime"]["spec"]["volumes"]}
    assert set(mounts.values()) == set(volumes)  # Knative: every volume mounted, every mount a volume
    assert all(set(volume) == {"name", "emptyDir"} for volume in volumes.values())
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
    # Everything the image writes (HOME, TMPDIR, caches) lands on a writable volume.
    env = {item["name"]: item.get("value") for item in runtime["env"]}
    for variable in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "HF_HOME"):
        assert any(env[variable] == path or env[variable].startswith(path + "/") for path in mounts), variable
    assert runtime["workingDir"] in mounts
    assert runtime["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}}


def test_probes_are_the_canary_health_check_with_the_values_thresholds() -> None:
    health = {"periodSeconds": 7, "timeoutSeconds": 4, "failureThreshold": 5, "initialDelaySeconds": 2, "startupSeconds": 300}
    objects = render({"serving": {"health": health}})
    runtime = container(objects)
    for probe, path, threshold in (
        ("readinessProbe", "/tiergate/health/ready", 5),
        ("livenessProbe", "/tiergate/health/live", 5),
        ("startupProbe", "/tiergate/health/ready", 43),  # ceil(300 / 7): the model-load budget
    ):
        assert runtime[probe] == {
            "httpGet": {"path": path, "port": 8080},
            "initialDelaySeconds": 2,
            "periodSeconds": 7,
            "timeoutSeconds": 4,
            "failureThreshold": threshold,
        }, probe
        assert runtime[probe]["httpGet"]["port"] == runtime["ports"][0]["containerPort"]  # Knative: the user port
    _, gateway, _ = chain(runtime)
    assert [option(gateway, name) for name in ("--health-period-s", "--health-timeout-s", "--health-failures")] == [
        "7",
        "4",
        "5",
    ]
    assert option(gateway, "--startup-timeout-s") == "300"
    # The ModerationModel carries no probe (the CRD has no field for one): the operator's InferenceService
    # leaves the runtime's canary probes in place.
    assert "Probe" not in str(objects["ModerationModel"]["spec"])


def test_regression_job_is_hardened_bounded_and_admitted(objects: dict[str, dict[str, Any]]) -> None:
    job = objects["Job"]
    assert job["spec"]["activeDeadlineSeconds"] == 900 and job["spec"]["ttlSecondsAfterFinished"] == 86400
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    (regression,) = pod["containers"]
    assert regression["securityContext"] == HARDENED
    assert regression["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    assert [mount["mountPath"] for mount in regression["volumeMounts"]] == ["/tmp"]
    url = regression["command"][regression["command"].index("--url") + 1]
    assert url == f"tiergate-predictor.{NAMESPACE}.svc.cluster.local:80"
    bounded = render({"regressionTest": {"activeDeadlineSeconds": 120, "ttlSecondsAfterFinished": 0}})["Job"]["spec"]
    assert (bounded["activeDeadlineSeconds"], bounded["ttlSecondsAfterFinished"]) == (120, 0)


def test_moderation_model_carries_the_values_the_operator_acts_on(objects: dict[str, dict[str, Any]]) -> None:
    """The values map onto the CRD's spec, and the operator's own model (tiergate.moderation_model) parses it."""
    from tiergate.moderation_model import API_VERSION, KIND, parse_spec

    resource = objects["ModerationModel"]
    assert (resource["apiVersion"], resource["kind"]) == (API_VERSION, KIND)
    # The operator names the InferenceService after the resource; the NetworkPolicy selects its pods by that name.
    assert (
        resource["metadata"]["name"]
        == "tiergate"
        == objects["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]["serving.kserve.io/inferenceservice"]
    )
    assert resource["spec"]["model"] == {"name": "tiergate", **VALUES["model"]}
    spec = parse_spec(resource)
    assert spec.serving.runtime == objects["ServingRuntime"]["metadata"]["name"] == "tiergate-triton"
    assert (spec.serving.min_replicas, spec.serving.max_replicas, spec.serving.gpu) == (1, 4, 1)
    assert (spec.serving.scale_metric, spec.serving.scale_target) == ("concurrency", 8)
    assert spec.serving.resources.requests == {"cpu": "2", "memory": "4Gi"}
    assert spec.serving.resources.limits == {"cpu": "4", "memory": "8Gi"}
    assert (spec.serving.gate_key_secret, spec.serving.optional_disabled, spec.serving.prometheus_scraping) == ("", [], True)
    assert spec.rollout.steps == [10, 50, 100]
    assert (spec.rollout.step_interval_seconds, spec.rollout.timeout_seconds) == (60, 900)
    assert spec.rollout.analysis.suites == [] and spec.rollout.analysis.request_timeout_seconds == 30
    assert "traffic" not in str(resource["spec"]).lower()  # traffic is the operator's

    extra = {
        "model": {"name": "mod"},
        "runtime": {"name": "rt"},
        "predictor": {"minReplicas": 0, "maxReplicas": 2, "scaleMetric": "rps", "scaleTarget": 3, "gpu": 0},
        "serving": {"gateKeySecret": "gate-key", "optionalDisabled": ["anti_trans"], "prometheusScraping": False},
        "rollout": {
            "steps": [5, 25, 100],
            "stepIntervalSeconds": 0,
            "timeoutSeconds": 30,
            "analysis": {"suites": [{"name": "positives", "minPassRate": 0.95}, {"name": "hard_negatives"}]},
        },
    }
    other = parse_spec(render(extra)["ModerationModel"])
    assert other.model.name == "mod" and other.serving.runtime == "rt"
    assert (other.serving.min_replicas, other.serving.max_replicas, other.serving.scale_metric) == (0, 2, "rps")
    assert (other.serving.gpu, other.serving.gate_key_secret, other.serving.optional_disabled) == (0, "gate-key", ["anti_trans"])
    assert other.serving.prometheus_scraping is False
    assert other.rollout.steps == [5, 25, 100] and other.rollout.timeout_seconds == 30
    assert [(rule.name, rule.min_pass_rate) for rule in other.rollout.analysis.suites] == [
        ("positives", 0.95),
        ("hard_negatives", 1.0),
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"rollout": {"steps": [50, 10, 100]}}, "rollout.steps must increase"),
        ({"rollout": {"steps": [100, 50]}}, "rollout.steps must end at 100"),
        ({"predictor": {"minReplicas": 3, "maxReplicas": 2}}, "maxReplicas must be at least"),
    ],
)
def test_the_chart_refuses_a_rollout_the_crd_would_reject(extra: dict[str, Any], message: str) -> None:
    """The CRD's CEL rule (last step 100) and the operator's checks fail at render time: promote renders first."""
    with pytest.raises(HelmError, match=message):
        render(extra)


def _rules(policy: dict[str, Any]) -> list[tuple[list[dict[str, Any]], set[int]]]:
    return [(rule["from"], {port["port"] for port in rule["ports"]}) for rule in policy["spec"]["ingress"]]


def _admits(policy: dict[str, Any], namespace_labels: dict[str, str], pod_labels: dict[str, str], port: int) -> bool:
    """NetworkPolicy semantics: namespaceSelector alone, podSelector alone (= the policy's namespace), or both (= both match)."""

    def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
        if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
            return False
        for expression in selector.get("matchExpressions", []):
            present = labels.get(expression["key"])
            if expression["operator"] == "In" and present not in expression["values"]:
                return False
            if expression["operator"] == "NotIn" and present in expression["values"]:
                return False
            if expression["operator"] == "Exists" and present is None:
                return False
            if expression["operator"] == "DoesNotExist" and present is not None:
                return False
        return True

    same_namespace = namespace_labels.get("kubernetes.io/metadata.name") == policy["metadata"].get("namespace", NAMESPACE)
    for peers, ports in _rules(policy):
        if port not in ports:
            continue
        for peer in peers:
            assert set(peer) <= {"namespaceSelector", "podSelector"} and peer, peer
            in_namespace = matches(peer["namespaceSelector"], namespace_labels) if "namespaceSelector" in peer else same_namespace
            if in_namespace and ("podSelector" not in peer or matches(peer["podSelector"], pod_labels)):
                return True
    return False


def test_network_policy_admits_only_ingress_operator_regression_job_and_monitoring(objects: dict[str, dict[str, Any]]) -> None:
    policy = objects["NetworkPolicy"]
    assert policy["spec"]["podSelector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": "tiergate"}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]

    def ns(name: str) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": name}

    job_labels = objects["Job"]["spec"]["template"]["metadata"]["labels"]
    for namespace, labels in ((ns("istio-system"), {}), (ns("knative-serving"), {}), (ns(NAMESPACE), job_labels)):
        for port in (8080, 8012, 8013):  # the gateway (RawDeployment), the queue-proxy (Serverless)
            assert _admits(policy, namespace, labels, port), (namespace, port)
    assert _admits(policy, ns("knative-serving"), {}, 9090)  # the Knative autoscaler
    for port in (8002, 9088, 9091):
        assert _admits(policy, ns("monitoring"), {}, port)
        assert not _admits(policy, ns("istio-system"), {}, port)
    # Nobody reaches Triton's own ports, and nothing else in the cluster reaches the pod at all.
    for name in ("istio-system", "knative-serving", "monitoring", NAMESPACE):
        for port in (8000, 9000):
            assert not _admits(policy, ns(name), job_labels, port)
    other_pod = {**job_labels, "tiergate.io/role": "something-else"}
    assert not _admits(policy, ns(NAMESPACE), other_pod, 8080)
    # The operator runs the regression vectors against the canary: its pods, in its namespace, and only those.
    operator = {"app.kubernetes.io/name": "tiergate-operator", "app.kubernetes.io/instance": "tiergate-operator"}
    for port in (8080, 8012, 8013):
        assert _admits(policy, ns("tiergate-system"), operator, port)
    for port in (8000, 9000, 8002, 9090):
        assert not _admits(policy, ns("tiergate-system"), operator, port)
    assert not _admits(policy, ns("tiergate-system"), {"app.kubernetes.io/name": "other"}, 8080)
    assert not _admits(policy, ns("default"), operator, 8080)
    assert not _admits(policy, ns(NAMESPACE), operator, 8080)
    assert not _admits(policy, ns("default"), job_labels, 8080)
    assert not _admits(policy, ns("monitoring"), {}, 8080)
    all_ports = set().union(*(ports for _, ports in _rules(policy)))
    assert all_ports == {8080, 8012, 8013, 9090, 8002, 9088, 9091}


def test_network_policy_selectors_come_from_values() -> None:
    # Helm merges maps into the defaults: replacing the default matchExpressions means nulling it.
    ingress = {"matchExpressions": None, "matchLabels": {"team": "edge"}}
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": None, "team": "obs"}}
    policy = render({"networkPolicy": {"ingressNamespaceSelector": ingress, "monitoringNamespaceSelector": monitoring}})[
        "NetworkPolicy"
    ]
    assert policy["spec"]["ingress"][0]["from"][0] == {"namespaceSelector": {"matchLabels": {"team": "edge"}}}
    assert _admits(policy, {"team": "edge"}, {}, 8080)
    assert not _admits(policy, {"kubernetes.io/metadata.name": "istio-system"}, {}, 8080)
    assert _admits(policy, {"team": "obs"}, {}, 8002)
    assert "NetworkPolicy" not in render({"networkPolicy": {"enabled": False}})
    operator = {
        "operatorNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
        "operatorPodSelector": {"matchLabels": {"app.kubernetes.io/name": None, "app": "op"}},
    }
    policy = render({"networkPolicy": operator})["NetworkPolicy"]
    assert _admits(policy, {"kubernetes.io/metadata.name": "ops"}, {"app": "op"}, 8012)
    assert not _admits(policy, {"kubernetes.io/metadata.name": "tiergate-system"}, {"app": "op"}, 8012)
    assert not _admits(policy, {"kubernetes.io/metadata.name": "ops"}, {"app.kubernetes.io/name": "tiergate-operator"}, 8012)


def test_notes_route_through_the_ingress_with_the_host_header() -> None:
    notes = Chart.load(str(CHART)).render(VALUES, name="tiergate", namespace=NAMESPACE)["tiergate-serving/templates/NOTES.txt"]
    assert '--header "Host: $SERVICE_HOSTNAME"' in notes and "inferenceservice tiergate -o jsonpath='{.status.url}'" in notes
    assert f"kubectl -n {NAMESPACE} create secret generic tiergate-admin-key --from-literal=key=" in notes
    assert "<ingress-host>:80" not in notes


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"serving": {"health": {"periodSeconds": -1}}}, "periodSeconds"),
        ({"serving": {"health": {"failureThreshold": 0}}}, "failureThreshold"),
        ({"serving": {"health": {"timeoutSeconds": "5"}}}, "timeoutSeconds"),
        ({"serving": {"health": {"initialDelaySeconds": -5}}}, "initialDelaySeconds"),
        ({"serving": {"health": {"startupSeconds": 1.5}}}, "startupSeconds"),
        ({"serving": {"health": {"period": 10}}}, "period"),
        ({"serving": {"maxRequestBytes": -1}}, "maxRequestBytes"),
        ({"serving": {"maxRequestBytes": "4MB"}}, "maxRequestBytes"),
        ({"serving": {"adminKeySecret": ""}}, "adminKeySecret"),
        ({"serving": {"adminKeySecret": "Not A Name"}}, "adminKeySecret"),
        ({"networkPolicy": {"enabled": "yes"}}, "enabled"),
        ({"networkPolicy": {"ingressNamespaceSelector": None}}, "ingressNamespaceSelector"),
        ({"networkPolicy": {"ingressNamespaceSelector": {"matchExpressions": None}}}, "ingressNamespaceSelector"),  # {}: all
        ({"networkPolicy": {"ingressNamespaceSelector": {"matchLabels": {"a": 1}}}}, "matchLabels"),
        ({"networkPolicy": {"monitoringNamespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}}, "operator"),
        ({"regressionTest": {"activeDeadlineSeconds": -1}}, "activeDeadlineSeconds"),
        ({"regressionTest": {"ttlSecondsAfterFinished": "1d"}}, "ttlSecondsAfterFinished"),
        ({"runtime": {"shmSizeLimit": "lots"}}, "shmSizeLimit"),
        ({"serving": {"health": {"busyLimitSeconds": 0}}}, "busyLimitSeconds"),
        ({"serving": {"bodyTimeoutSeconds": 0}}, "bodyTimeoutSeconds"),
        ({"serving": {"maxConnections": "many"}}, "maxConnections"),
        ({"model": {"gateDigest": ""}}, "gateDigest"),
        ({"model": {"gateDigest": "C" * 64}}, "gateDigest"),
        ({"model": {"name": "a" * 46}}, "name"),  # the ModerationModel's metadata.name: at most 45 (the CRD)
        ({"model": {"version": "V1"}}, "version"),  # the CRD's pattern: lower case
        ({"predictor": {"canaryTrafficPercent": 10}}, "canaryTrafficPercent"),  # traffic is the operator's
        ({"predictor": {"automountServiceAccountToken": True}}, "automountServiceAccountToken"),
        ({"predictor": {"gpu": 9}}, "gpu"),
        ({"serving": {"optionalDisabled": ["Anti Trans"]}}, "optionalDisabled"),
        ({"regressionTest": {"argoPostSync": True}}, "argoPostSync"),  # the operator verifies before traffic moves
        ({"rollout": {"steps": []}}, "steps"),
        ({"rollout": {"steps": [10, 50]}}, "steps"),  # must reach 100
        ({"rollout": {"steps": [0, 100]}}, "steps"),
        ({"rollout": {"steps": [*range(1, 11), 100]}}, "steps"),
        ({"rollout": {"timeoutSeconds": 10}}, "timeoutSeconds"),
        ({"rollout": {"stepIntervalSeconds": -1}}, "stepIntervalSeconds"),
        ({"rollout": {"analysis": {"suites": [{"minPassRate": 0.5}]}}}, "name"),
        ({"rollout": {"analysis": {"suites": [{"name": "positives", "minPassRate": 1.5}]}}}, "minPassRate"),
        ({"rollout": {"analysis": {"requestTimeoutSeconds": 0}}}, "requestTimeoutSeconds"),
        ({"networkPolicy": {"operatorPodSelector": {"matchLabels": None}}}, "operatorPodSelector"),  # {}: every pod there
    ],
)
def test_schema_rejects_bad_values(extra: dict[str, Any], key: str) -> None:
    with pytest.raises(HelmError) as caught:
        Chart.load(str(CHART)).render(merged(VALUES, extra), name="tiergate", namespace=NAMESPACE)
    assert key in str(caught.value)


# --- the review service (review.*) -------------------------------------------------------------------

REVIEW_ON: dict[str, Any] = {"review": {"enabled": True}}


def render_review(extra: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """The chart's objects by (kind, name) with the review service on (two NetworkPolicies then), each validated."""
    documents = render_documents(CHART, merged(VALUES, merged(REVIEW_ON, extra or {})), name="tiergate", namespace=NAMESPACE)
    objects = {(document["kind"], document["metadata"]["name"]): document for document in documents}
    assert len(objects) == len(documents)
    return objects


def review_pod(objects: dict[tuple[str, str], dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = objects[("Deployment", "tiergate-review")]["spec"]["template"]["spec"]
    (review,) = pod["containers"]
    return pod, review


def test_review_service_is_off_by_default_and_renders_four_more_objects_when_on() -> None:
    assert not any(kind in render() for kind in ("Deployment", "Service", "Ingress"))
    objects = render_review()
    assert sorted(objects) == [
        ("Deployment", "tiergate-review"),
        ("Job", "tiergate-regression-v1"),
        ("ModerationModel", "tiergate"),
        ("NetworkPolicy", "tiergate-predictor"),
        ("NetworkPolicy", "tiergate-review"),
        ("Service", "tiergate-review"),
        ("ServingRuntime", "tiergate-triton"),
    ]
    assert lint(str(CHART), merged(VALUES, REVIEW_ON))["errors"] == []
    with_ingress = render_review({"review": {"ingress": {"enabled": True}}})
    assert ("Ingress", "tiergate-review") in with_ingress and len(with_ingress) == len(objects) + 1


def test_review_pod_is_non_root_read_only_least_privilege_and_probed() -> None:
    objects = render_review()
    deployment = objects[("Deployment", "tiergate-review")]
    pod, review = review_pod(objects)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert review["securityContext"] == HARDENED
    assert review["image"] == "ghcr.io/tiergate/tiergate-cpu:0.1.0"  # the CPU image carries FastAPI, uvicorn, Jinja2, psycopg
    assert review["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    probes = {name: review[name]["httpGet"] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {
        "startupProbe": {"path": "/healthz", "port": 8080},
        "readinessProbe": {"path": "/api/v1/health", "port": 8080},  # the store answers
        "livenessProbe": {"path": "/healthz", "port": 8080},  # the process answers: a database outage restarts nothing
    }
    assert review["startupProbe"]["failureThreshold"] == 12  # ceil(startupSeconds 120 / periodSeconds 10)
    assert review["resources"] == {"requests": {"cpu": "100m", "memory": "384Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert [mount["mountPath"] for mount in review["volumeMounts"]] == ["/tmp"]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    env = {item["name"]: item for item in review["env"]}
    assert env["HOME"]["value"] == "/tmp" and env["TMPDIR"]["value"] == "/tmp"
    sizes = {"resources": {"limits": {"memory": "2Gi"}}, "health": {"periodSeconds": 5, "startupSeconds": 60}}
    sized = review_pod(render_review({"review": sizes}))[1]
    assert sized["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"} and sized["startupProbe"]["failureThreshold"] == 12


def test_review_database_url_comes_only_from_a_secret() -> None:
    _, review = review_pod(render_review())
    env = {item["name"]: item for item in review["env"]}
    assert env["TIERGATE_FEEDBACK_DB"] == {
        "name": "TIERGATE_FEEDBACK_DB",
        "valueFrom": {"secretKeyRef": {"name": "tiergate-feedback-db", "key": "url"}},
    }
    assert "--db" not in review["command"] and "postgresql" not in str(review)
    other = review_pod(render_review({"review": {"databaseSecret": "feedback-pg", "databaseSecretKey": "dsn"}}))[1]
    secret = {item["name"]: item for item in other["env"]}["TIERGATE_FEEDBACK_DB"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "feedback-pg", "key": "dsn"}


def test_review_command_parses_with_the_real_cli_and_reaches_the_predictor() -> None:
    import typer

    from tiergate.cli import review_cmd

    app = typer.Typer()
    app.command()(review_cmd.review)
    command = typer.main.get_command(app)
    _, review = review_pod(render_review())
    assert review["command"][:2] == ["tiergate", "review"]
    params = command.make_context("review", review["command"][2:]).params
    assert (params["host"], params["port"], params["profile"]) == ("0.0.0.0", 8080, "production")
    assert params["triton_url"] == f"tiergate-predictor.{NAMESPACE}.svc.cluster.local:80"  # the regression Job's address
    assert params["cookie_secure"].value == "always" and params["forwarded_allow_ips"] is None
    extra = {"review": {"tritonUrl": "http://triton.other:8080", "secureCookies": False, "forwardedAllowIps": "10.0.0.0/8"}}
    params = command.make_context("review", review_pod(render_review(extra))[1]["command"][2:]).params
    assert (params["triton_url"], params["cookie_secure"].value, params["forwarded_allow_ips"]) == (
        "http://triton.other:8080",
        "auto",
        "10.0.0.0/8",
    )


def test_review_pod_does_not_restart_when_a_model_is_promoted() -> None:
    """Sessions live in the pod: a new model.version must leave its template (and so the pod) as it was."""
    first = render_review()[("Deployment", "tiergate-review")]["spec"]["template"]
    promoted = render_review({"model": {"version": "v2", "digest": "b" * 64}})
    second = promoted[("Deployment", "tiergate-review")]["spec"]["template"]
    assert first == second


def test_review_service_and_ingress_route_to_the_pod() -> None:
    objects = render_review({"review": {"ingress": {"enabled": True, "className": "nginx", "tlsSecret": "review-tls"}}})
    deployment = objects[("Deployment", "tiergate-review")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    service = objects[("Service", "tiergate-review")]
    assert service["spec"]["selector"] == selector and service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    ingress = objects[("Ingress", "tiergate-review")]["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"hosts": ["review.tiergate.example.com"], "secretName": "review-tls"}]
    (rule,) = ingress["rules"]
    assert rule["host"] == "review.tiergate.example.com"
    assert rule["http"]["paths"][0]["backend"] == {"service": {"name": "tiergate-review", "port": {"name": "http"}}}
    notes = Chart.load(str(CHART)).render(merged(VALUES, REVIEW_ON), name="tiergate", namespace=NAMESPACE)[
        "tiergate-serving/templates/NOTES.txt"
    ]
    assert f"kubectl -n {NAMESPACE} create secret generic tiergate-feedback-db --from-literal=url=" in notes
    assert "tiergate feedback token create --name YOU --scope review" in notes


def test_network_policies_with_the_review_service() -> None:
    objects = render_review()
    predictor = objects[("NetworkPolicy", "tiergate-predictor")]
    review_policy = objects[("NetworkPolicy", "tiergate-review")]
    review_labels = objects[("Deployment", "tiergate-review")]["spec"]["template"]["metadata"]["labels"]

    def ns(name: str, **labels: str) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": name, **labels}

    # The try-it page reaches the predictor's gateway (and Knative's queue-proxy), nothing else of it.
    for port in (8080, 8012, 8013):
        assert _admits(predictor, ns(NAMESPACE), review_labels, port)
    for port in (8000, 9000, 8002, 9090):
        assert not _admits(predictor, ns(NAMESPACE), review_labels, port)
    assert not _admits(predictor, ns("default"), review_labels, 8080)  # only this release's pod, in this namespace
    assert not _admits(render()["NetworkPolicy"], ns(NAMESPACE), review_labels, 8080)  # review off: not admitted
    # The review pod: the ingress controller and namespaces that opted in to submit feedback, on 8080 only.
    selector = objects[("Deployment", "tiergate-review")]["spec"]["selector"]
    assert review_policy["spec"]["podSelector"] == {"matchLabels": selector["matchLabels"]}
    assert review_policy["spec"]["policyTypes"] == ["Ingress"]
    assert _admits(review_policy, ns("ingress-nginx"), {}, 8080)
    assert _admits(review_policy, ns("chat", **{"tiergate.io/feedback-clients": "true"}), {"app": "chat"}, 8080)
    assert not _admits(review_policy, ns("chat"), {"app": "chat"}, 8080)
    assert not _admits(review_policy, ns(NAMESPACE), {}, 8080)
    assert not _admits(review_policy, ns("ingress-nginx"), {}, 9090)
    assert set().union(*(ports for _, ports in _rules(review_policy))) == {8080}
    assert ("NetworkPolicy", "tiergate-review") not in render_review({"networkPolicy": {"enabled": False}})


def test_review_strings_are_quoted_even_past_the_schema(tmp_path: Path) -> None:
    """Without the schema a hostile review value stays one string: no injected key, flag or privilege."""
    import shutil

    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()
    hostile = {
        "image": HOSTILE_IMAGE,
        "profile": "p\n            - --db\n            - sqlite:////tmp/x",
        "tritonUrl": "h:1\n          privileged: true",
        "databaseSecret": "db\n                  optional: true",
        "forwardedAllowIps": "*\n          stdin: true",
    }
    rendered = Chart.load(str(chart)).render(merged(VALUES, {"review": {"enabled": True, **hostile}}), name="t", namespace="n")
    deployment = yaml.safe_load(rendered["tiergate-serving/templates/review-deployment.yaml"])
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == HOSTILE_IMAGE and set(container) == {
        "name", "image", "command", "env", "ports", "startupProbe", "readinessProbe", "livenessProbe",
        "securityContext", "resources", "volumeMounts",
    }  # fmt: skip
    assert container["securityContext"] == HARDENED
    assert container["command"].count("--db") == 0 and hostile["profile"] in container["command"]
    secret = {item["name"]: item for item in container["env"]}["TIERGATE_FEEDBACK_DB"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": hostile["databaseSecret"], "key": "url"}


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"review": {"databaseSecret": ""}}, "databaseSecret"),
        ({"review": {"databaseSecret": "db\nstdin: true"}}, "databaseSecret"),
        ({"review": {"databaseUrl": "postgresql://u:p@h/db"}}, "databaseUrl"),  # the URL is never a value
        ({"review": {"image": HOSTILE_IMAGE}}, "image"),
        ({"review": {"tritonUrl": "http://h:8000/v2/models"}}, "tritonUrl"),
        ({"review": {"tritonUrl": "h:1\n  - --db"}}, "tritonUrl"),
        ({"review": {"profile": "../etc"}}, "profile"),
        ({"review": {"forwardedAllowIps": "*"}}, "forwardedAllowIps"),
        ({"review": {"replicas": 2}}, "replicas"),  # sessions are in-process: one pod
        ({"review": {"health": {"periodSeconds": 0}}}, "periodSeconds"),
        ({"review": {"service": {"port": 0}}}, "port"),
        ({"review": {"ingress": {"host": "Not A Host"}}}, "host"),
        ({"review": {"ingress": {"enabled": "yes"}}}, "enabled"),
        ({"review": {"networkPolicy": {"clientNamespaceSelector": {"matchLabels": None}}}}, "clientNamespaceSelector"),  # {}: all
        ({"review": {"tmpSizeLimit": "lots"}}, "tmpSizeLimit"),
    ],
)
def test_schema_rejects_bad_review_values(extra: dict[str, Any], key: str) -> None:
    with pytest.raises(HelmError) as caught:
        Chart.load(str(CHART)).render(merged(VALUES, merged(REVIEW_ON, extra)), name="tiergate", namespace=NAMESPACE)
    assert key in str(caught.value)


# manifests/kserve/ holds the chart's ServingRuntime and ModerationModel for these example values.
EXAMPLE_VALUES: dict[str, Any] = {
    "model": {
        "version": "example",
        "storageUri": "s3://tiergate-models/tiergate/example/" + "0" * 64,
        "digest": "0" * 64,
        "gateDigest": "0" * 64,
    }
}
EXAMPLES = {
    "ServingRuntime": PROJECT_ROOT / "manifests" / "kserve" / "servingruntime-triton.yaml",
    "ModerationModel": PROJECT_ROOT / "manifests" / "kserve" / "moderationmodel.yaml",
}
EXAMPLE_HEADER = (
    "# Generated from charts/tiergate-serving with example values (model.version 'example', zero digests):\n"
    "# python -m tests.unit.test_chart_security --write. The chart is the source; a test keeps this equal to it.\n"
)


def example_documents() -> dict[str, dict[str, Any]]:
    rendered = Chart.load(str(CHART)).render(EXAMPLE_VALUES, name="tiergate", namespace="tiergate")
    documents = {}
    for name, text in rendered.items():
        for document in yaml.safe_load_all(text) if name.endswith(".yaml") else []:
            if document and document["kind"] in EXAMPLES:
                labels = document["metadata"].get("labels", {})
                labels.pop("helm.sh/chart", None)  # a chart-version bump alone is no behaviour change
                documents[document["kind"]] = document
    return documents


def write_examples() -> None:
    for kind, document in example_documents().items():
        EXAMPLES[kind].write_text(EXAMPLE_HEADER + yaml.safe_dump(document, sort_keys=False, width=200))


def test_static_kserve_manifests_are_the_chart_rendering() -> None:
    for kind, document in example_documents().items():
        path = EXAMPLES[kind]
        assert yaml.safe_load(path.read_text()) == document, (
            f"{path.relative_to(PROJECT_ROOT)} differs from the chart: python -m tests.unit.test_chart_security --write"
        )
        assert path.read_text().startswith(EXAMPLE_HEADER)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.unit.test_chart_security --write")
    write_examples()
    print(f"wrote {', '.join(str(Path(path).relative_to(PROJECT_ROOT)) for path in EXAMPLES.values())}")
