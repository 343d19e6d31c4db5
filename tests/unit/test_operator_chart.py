"""The operator chart (charts/tiergate-operator), rendered with real Helm (helm-python-sdk).

Every rendered object validates against the Kubernetes 1.30 types (tiergate.k8s_validation); then
what a template edit could silently lose is asserted: the command the operator runs with, a
non-root read-only container with its probes and resources, Secrets only by reference, and RBAC
that grants exactly the verbs the operator uses — cluster-wide or in one watched namespace, the
Lease in the release namespace only. The chart's CRD is a byte-identical copy of the package's
(`python -m tests.unit.test_operator_chart --write` copies it again).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_python import Chart, HelmError
from helm_python.chart import lint

from tests.helm_helpers import HARDENED, merged, render_documents
from tiergate.k8s_validation import validate_text
from tiergate.paths import PROJECT_ROOT

CHART = PROJECT_ROOT / "charts" / "tiergate-operator"
CRD_SOURCE = PROJECT_ROOT / "tiergate" / "crds" / "tiergate.io_moderationmodels.yaml"
CRD_COPY = CHART / "crds" / "tiergate.io_moderationmodels.yaml"
NAMESPACE = "tiergate-system"
RELEASE = "tiergate-operator"

# What serving/operator does with the API: (apiGroup, resource) -> verbs, and nothing else.
OPERATOR_RULES = {
    ("tiergate.io", "moderationmodels"): {"get", "list", "watch", "patch"},
    ("tiergate.io", "moderationmodels/status"): {"update"},
    ("tiergate.io", "moderationmodels/finalizers"): {"update"},
    ("serving.kserve.io", "inferenceservices"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "events"): {"create"},
}
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}



def render(extra: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    return render_documents(CHART, extra or {}, name=RELEASE, namespace=namespace)


def one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [document for document in documents if document["kind"] == kind]
    return found


def operator_container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def option(argv: list[str], name: str) -> str:
    found = [argv[index + 1] for index, arg in enumerate(argv[:-1]) if arg == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, over every rule; wildcards fail here."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        for value in (*rule["apiGroups"], *rule["resources"], *rule["verbs"], *rule.get("resourceNames", [])):
            assert "*" not in value, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return render()


def test_default_render_is_valid_and_lints(documents: list[dict[str, Any]]) -> None:
    kinds = sorted(document["kind"] for document in documents)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "ServiceAccount"]
    assert lint(str(CHART), {})["errors"] == []
    assert not [document for document in documents if document["kind"] == "Secret"]


def test_crd_is_the_packages_crd_byte_for_byte() -> None:
    assert CRD_COPY.read_bytes() == CRD_SOURCE.read_bytes(), (
        f"{CRD_COPY.relative_to(PROJECT_ROOT)} differs from {CRD_SOURCE.relative_to(PROJECT_ROOT)}: "
        "python -m tests.unit.test_operator_chart --write"
    )
    assert sorted(path.name for path in (CHART / "crds").iterdir()) == [CRD_COPY.name]
    assert validate_text(CRD_COPY.read_text()) == 1  # apiextensions.k8s.io/v1 CustomResourceDefinition, strict


def test_operator_runs_the_projects_image_with_its_command(documents: list[dict[str, Any]]) -> None:
    container = operator_container(documents)
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container["image"] == f"ghcr.io/tiergate/tiergate-cpu:{app_version}"
    argv = container["command"]
    assert argv[:3] == ["tiergate", "operator", "run"] and "args" not in container
    assert option(argv, "--namespace") == ""  # every namespace
    assert option(argv, "--profile") == "production"
    assert option(argv, "--lease-namespace") == NAMESPACE
    assert option(argv, "--lease-name") == one(documents, "Deployment")["metadata"]["name"] == RELEASE
    assert option(argv, "--health-port") == "8081"
    assert option(argv, "--identity") == "$(POD_NAME)"
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert set(env) == {"POD_NAME"} and "envFrom" not in container  # no Secret unless asked for
    scoped = operator_container(render({"watchNamespace": "moderation", "profile": "local"}, namespace="ops"))["command"]
    assert option(scoped, "--namespace") == "moderation" and option(scoped, "--profile") == "local"
    assert option(scoped, "--lease-namespace") == "ops"
    pinned = operator_container(render({"image": {"tag": "1.2.3", "digest": "sha256:" + "b" * 64}}))
    assert pinned["image"] == "ghcr.io/tiergate/tiergate-cpu:1.2.3@sha256:" + "b" * 64


def test_rendered_command_parses_with_the_real_operator_command(documents: list[dict[str, Any]]) -> None:
    """Every option the chart passes exists in `tiergate operator run` and its value is accepted (parsed, not run)."""
    import typer

    pytest.importorskip("tiergate.cli.operator_cmd", reason="cli/operator_cmd.py is not in this tree yet")
    from tiergate.cli.main import app

    argv = [arg.replace("$(POD_NAME)", "tiergate-operator-7d9f-abcde") for arg in operator_container(documents)["command"]]
    assert argv[0] == "tiergate"
    command = typer.main.get_command(app)
    for name in argv[1:3]:  # operator, run
        assert hasattr(command, "get_command"), name  # a group (typer's own click, not necessarily `click`)
        found = command.get_command(command.context_class(command), name)
        assert found is not None, f"tiergate has no command {' '.join(argv[1:3])}"
        command = found
    params = command.make_context("run", argv[3:]).params
    assert (params["namespace"], params["profile"]) == ("", "production")
    assert (params["lease_namespace"], params["lease_name"]) == (NAMESPACE, RELEASE)
    assert (params["identity"], params["health_port"]) == ("tiergate-operator-7d9f-abcde", 8081)


def test_container_is_non_root_read_only_with_probes_and_resources(documents: list[dict[str, Any]]) -> None:
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    container = operator_container(documents)
    assert container["securityContext"] == HARDENED
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["ports"] == [{"name": "health", "containerPort": 8081, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    # It calls the API: the token is mounted, for its own ServiceAccount.
    account = one(documents, "ServiceAccount")
    assert pod["automountServiceAccountToken"] is True and account["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert one(documents, "Deployment")["spec"]["replicas"] == 1
    assert one(render({"replicas": 2}), "Deployment")["spec"]["replicas"] == 2  # leader election makes this safe


def test_the_image_user_is_the_one_the_pod_runs_as() -> None:
    """runAsUser 1000 is the `tiergate` user of the CPU image (its Dockerfile's UID build argument)."""
    dockerfile = (PROJECT_ROOT / "components" / "images" / "Dockerfile.cpu").read_text()
    assert "ARG UID=1000" in dockerfile and "USER ${UID}:${UID}" in dockerfile


def test_secrets_only_by_reference() -> None:
    container = operator_container(render({"storeCredentialsSecret": "tiergate-object-store", "gateKeySecret": "gate-key"}))
    assert container["envFrom"] == [{"secretRef": {"name": "tiergate-object-store"}}]
    env = {item["name"]: item for item in container["env"]}
    assert env["TIERGATE_GATE_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "gate-key", "key": "key"}}
    assert all("value" not in item for item in container["env"])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["storeCredentialsSecret"] == "" and values["gateKeySecret"] == ""


def test_cluster_scope_grants_exactly_what_the_operator_uses(documents: list[dict[str, Any]]) -> None:
    cluster_role = one(documents, "ClusterRole")
    assert grants(cluster_role) == OPERATOR_RULES
    binding = one(documents, "ClusterRoleBinding")
    account = one(documents, "ServiceAccount")["metadata"]["name"]
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role["metadata"]["name"]}
    assert binding["roleRef"] == role_ref
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    lease_role = one(documents, "Role")
    assert lease_role["metadata"]["namespace"] == NAMESPACE and grants(lease_role) == LEASE_RULES
    named = [rule for rule in lease_role["rules"] if "resourceNames" in rule]
    assert named == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [RELEASE], "verbs": ["get", "update"]}
    ]
    lease_binding = one(documents, "RoleBinding")
    assert lease_binding["metadata"]["namespace"] == NAMESPACE
    assert lease_binding["roleRef"]["name"] == lease_role["metadata"]["name"]
    assert lease_binding["subjects"] == binding["subjects"]


def test_namespace_scope_is_a_role_in_the_watched_namespace_and_nothing_cluster_wide() -> None:
    documents = render({"watchNamespace": "moderation"})
    kinds = sorted(document["kind"] for document in documents)
    assert kinds == ["Deployment", "Role", "Role", "RoleBinding", "RoleBinding", "ServiceAccount"]
    roles = {document["metadata"]["namespace"]: document for document in documents if document["kind"] == "Role"}
    assert grants(roles["moderation"]) == OPERATOR_RULES and grants(roles[NAMESPACE]) == LEASE_RULES
    bindings = {document["metadata"]["namespace"]: document for document in documents if document["kind"] == "RoleBinding"}
    for namespace, binding in bindings.items():
        role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles[namespace]["metadata"]["name"]}
        assert binding["roleRef"] == role_ref
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]


def test_the_lease_the_role_names_is_the_one_the_operator_takes() -> None:
    documents = render({"serviceAccount": {"name": "op"}}, namespace="ops")
    argv = operator_container(documents)["command"]
    lease_role = one(documents, "Role")
    names = {name for rule in lease_role["rules"] for name in rule.get("resourceNames", [])}
    assert names == {option(argv, "--lease-name")} and lease_role["metadata"]["namespace"] == option(argv, "--lease-namespace")
    assert one(documents, "ServiceAccount")["metadata"]["name"] == "op"
    assert one(documents, "ClusterRoleBinding")["subjects"] == [{"kind": "ServiceAccount", "name": "op", "namespace": "ops"}]


def test_string_values_are_quoted_even_past_the_schema(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()
    hostile = "x\n          securityContext: {privileged: true}"
    rendered = Chart.load(str(chart)).render(
        {"profile": hostile, "storeCredentialsSecret": hostile, "gateKeySecret": hostile}, name=RELEASE, namespace=NAMESPACE
    )
    deployment = yaml.safe_load(rendered["tiergate-operator/templates/deployment.yaml"])
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert option(container["command"], "--profile") == hostile and container["securityContext"] == HARDENED


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"replicas": 0}, "replicas"),
        ({"replicas": "2"}, "replicas"),
        ({"image": {"repository": "Not An Image"}}, "repository"),
        ({"image": {"repository": "ghcr.io/x/y:1\n  stdin: true"}}, "repository"),
        ({"image": {"digest": "sha256:short"}}, "digest"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"watchNamespace": "Moderation"}, "watchNamespace"),
        ({"watchNamespace": "*"}, "watchNamespace"),
        ({"profile": "../etc"}, "profile"),
        ({"storeCredentialsSecret": "AKIA/SECRET+KEY"}, "storeCredentialsSecret"),
        ({"gateKeySecret": "not a name"}, "gateKeySecret"),
        ({"gateKey": "0123abcd"}, "gateKey"),  # a key in values is refused: only Secret names are accepted
        ({"resources": {"limits": {"cpu": 1.5}}}, "cpu"),
        ({"tmpSizeLimit": "lots"}, "tmpSizeLimit"),
        ({"serviceAccount": {"annotations": {"a": 1}}}, "annotations"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_schema_rejects_bad_values(extra: dict[str, Any], key: str) -> None:
    with pytest.raises(HelmError) as caught:
        Chart.load(str(CHART)).render(merged({}, extra), name=RELEASE, namespace=NAMESPACE)
    assert key in str(caught.value)


def write_crd() -> None:
    CRD_COPY.parent.mkdir(parents=True, exist_ok=True)
    CRD_COPY.write_bytes(CRD_SOURCE.read_bytes())


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.unit.test_operator_chart --write")
    write_crd()
    print(f"wrote {CRD_COPY.relative_to(PROJECT_ROOT)}")


def test_the_serving_charts_network_policy_admits_these_pods(documents: list[dict[str, Any]]) -> None:
    """The serving chart's default operatorPodSelector matches the pods this chart runs (the canary analysis)."""
    serving = yaml.safe_load((PROJECT_ROOT / "charts" / "tiergate-serving" / "values.yaml").read_text())
    selector = serving["networkPolicy"]["operatorPodSelector"]
    labels = one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert set(selector) == {"matchLabels"} and selector["matchLabels"].items() <= labels.items()
    namespace = serving["networkPolicy"]["operatorNamespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    assert namespace == NAMESPACE  # the install namespace the README and the Argo CD Application use
