"""The containerised product end to end on this machine, with the tiny model.

`run_local(..., runner="docker")` runs every pipeline task in its image (kfp.local's
DockerRunner: non-root, read-only root filesystem): generate, merge, three training phases,
export, evaluate, then — the gate passing — package, publish to the (simulated) PVC and the
GitOps commit. Then the serving image serves the *published* repository with the chart's
ServingRuntime arguments, a text is classified, and the chart's regression test Job (its image
and command, rendered by Helm) runs in a container against it.

A tiny model cannot meet the real gates, so the test runs with a config override
($TIERGATE_HOME, which the runner passes on to every task): the same taxonomy with gates at 0
and every regression vector tracked as a known gap. Labels, label hash and every other number
are the packaged ones; what is exercised is the path past the gate, not the model's quality.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.containers import IMAGE_UID, IMAGES, require_engine_and_images
from tiergate.paths import PROJECT_ROOT, config_dir

pytestmark = pytest.mark.slow
CATEGORIES = "threats,spam,harassment"
CHART = PROJECT_ROOT / "charts" / "tiergate-serving"


def relaxed_config(home: Path, store_root: Path, gitops: Path, tiny_base: Path) -> None:
    """A copy of the packaged config: gates at 0, vectors as known gaps, a `docker-test` profile."""
    config = home / "config"
    shutil.copytree(config_dir(), config, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    taxonomy_file = config / "taxonomy.yaml"
    taxonomy = yaml.safe_load(taxonomy_file.read_text(encoding="utf-8"))
    for tier in taxonomy["tiers"].values():
        tier["f1_gate"] = 0.0
        if tier.get("recall_floor") is not None:
            tier["recall_floor"] = 0.0
    taxonomy_file.write_text(yaml.safe_dump(taxonomy, sort_keys=False, allow_unicode=True), encoding="utf-8")
    for suite_file in (config / "regression").glob("*.yaml"):
        suite = yaml.safe_load(suite_file.read_text(encoding="utf-8"))
        for vector in suite["vectors"]:
            vector["expected"] = "known_gap"
        suite["policy"] = "all"  # an any-N-of-M suite may mark no gap: tracked here like the others
        suite["promote_xpass"] = []  # a promoted known gap is required again: none for the tiny model
        suite_file.write_text(yaml.safe_dump(suite, sort_keys=False, allow_unicode=True), encoding="utf-8")
    profile = {
        "extends": "local",
        "name": "docker-test",
        "train": {
            "base_model": str(tiny_base),
            "learning_rate": 1e-3,
            "phases": {"phase1": {"epochs": 1}, "phase2": {"epochs": 1}, "phase3": {"epochs": 1}},
        },
        "evaluate": {"bootstrap_samples": 20},
        "publish": {"pvc_mount_root": str(store_root)},
        "promote": {"repo_url": str(gitops), "values_path": "environments/local/values.yaml"},
    }
    (config / "profiles" / "docker-test.yaml").write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def containerised_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Iterator[dict[str, Any]]:
    from tiergate.pipelines.runner import run_local

    require_engine_and_images(IMAGES.cpu, IMAGES.gpu, IMAGES.triton)
    root = tmp_path_factory.mktemp("containers")
    home, store, gitops = root / "home", root / "pvc", root / "gitops.git"
    relaxed_config(home, store, gitops, tiny_base)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIERGATE_HOME", str(home))
        started = time.monotonic()
        outputs = run_local(root / "run", profile="docker-test", categories=CATEGORIES, model_version="docker-1", runner="docker")
        outputs["wall_s"] = time.monotonic() - started
        outputs.update(root=root / "run" / "kfp", home=home, store=store, gitops=gitops)
        yield outputs


def test_every_task_ran_in_its_image_as_a_non_root_user(containerised_run: dict[str, Any]) -> None:
    lines = (containerised_run["root"] / "containers.jsonl").read_text().splitlines()
    containers = [json.loads(line) for line in lines]
    by_function: dict[str, set[str]] = {}
    for entry in containers:
        assert entry["exit_code"] == 0, entry
        assert entry["user"] and not entry["user"].startswith("0"), entry
        by_function.setdefault(entry["function"], set()).add(entry["image"])
    assert by_function["train"] == {IMAGES.gpu} and by_function["export"] == {IMAGES.gpu}
    for function in ("list_categories", "generate", "merge", "evaluate", "package", "publish", "promote"):
        assert by_function[function] == {IMAGES.cpu}, (function, by_function)
    assert sum(entry["function"] == "generate" for entry in containers) == len(CATEGORIES.split(","))
    assert sum(entry["function"] == "train" for entry in containers) == 3


def test_the_gate_passed_and_the_model_was_packaged_published_and_promoted(containerised_run: dict[str, Any]) -> None:
    from tiergate.components.promote.gitops import history
    from tiergate.gate import load_gate
    from tiergate.profiles import load_profile

    gate = load_gate(containerised_run["evaluation"])
    assert gate.passed
    assert containerised_run["promoted"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIERGATE_HOME", str(containerised_run["home"]))
        settings = load_profile("docker-test").promote
    entries = [entry for entry in history(settings) if entry["version"]]
    assert entries and entries[0]["version"] == "docker-1"
    assert entries[0]["storageUri"].startswith("pvc://tiergate-models/store/")
    published = served_repository(containerised_run, entries[0]["storageUri"])
    assert (published / "repository.json").is_file()


def served_repository(run: dict[str, Any], storage_uri: str) -> Path:
    """The published copy the ModerationModel's storageUri names (what the operator deploys), on the simulated PVC."""
    return run["store"] / storage_uri.removeprefix("pvc://")


def render_chart(version: str, storage_uri: str, digest: str, gate_digest: str) -> dict[str, Any]:
    """The chart as GitOps would apply it, with this machine's images."""
    from helm_python import Chart

    values = {
        "model": {"name": "tiergate", "version": version, "storageUri": storage_uri, "digest": digest, "gateDigest": gate_digest},
        "runtime": {"image": IMAGES.triton},
        "regressionTest": {"image": IMAGES.cpu},
    }
    rendered = Chart.load(str(CHART)).render(values, name="tiergate", namespace="tiergate")
    texts = [text for name, text in rendered.items() if name.endswith((".yaml", ".yml"))]  # not NOTES.txt
    documents = [doc for text in texts for doc in yaml.safe_load_all(text) if doc]
    return {doc["kind"]: doc for doc in documents}


def free_ports(count: int) -> list[int]:
    from tiergate.serving.server import free_port

    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def container_process(
    runtime: dict[str, Any], http_port: int, upstream_port: int, grpc_port: int, metrics_port: int
) -> tuple[list[str], dict[str, str]]:
    """The ServingRuntime container's args and environment as the kubelet would run them, on free ports.

    Host networking (this engine has no bridge): the chart's fixed ports become free ones. The
    admin key Secret becomes a generated key, and `$(VAR)` references are expanded from the
    container's environment as Kubernetes does (docker does not).
    """
    import re
    import secrets

    environment: dict[str, str] = {}
    for variable in runtime.get("env", []):
        if "secretKeyRef" in variable.get("valueFrom", {}):
            environment[variable["name"]] = secrets.token_hex(16)
        else:
            environment[variable["name"]] = variable["value"]
    replacements = {
        "--listen": f"0.0.0.0:{http_port}",
        "--upstream": f"127.0.0.1:{upstream_port}",
        "--http-port": str(upstream_port),
        "--grpc-port": str(grpc_port),
        "--metrics-port": str(metrics_port),
    }
    args: list[str] = []
    for arg in runtime["args"]:
        name, equals, _ = arg.partition("=")
        if equals and name in replacements:
            arg = f"{name}={replacements[name]}"
        elif args and args[-1] in replacements and not arg.startswith("-"):
            arg = replacements[args[-1]]
        args.append(re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda match: environment.get(match[1], match[0]), arg))
    return args, environment


@pytest.fixture(scope="module")
def serving_container(containerised_run: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The serving image on the published repository, started with the ServingRuntime's arguments."""
    from tiergate.components.promote.gitops import history
    from tiergate.profiles import load_profile

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIERGATE_HOME", str(containerised_run["home"]))
        entry = next(entry for entry in history(load_profile("docker-test").promote) if entry["version"])
    repository = served_repository(containerised_run, entry["storageUri"])
    manifests = render_chart(entry["version"], entry["storageUri"], entry["digest"], entry["gateDigest"])
    runtime = manifests["ServingRuntime"]["spec"]["containers"][0]
    assert runtime["image"] == IMAGES.triton
    http_port, upstream_port, grpc_port, metrics_port = free_ports(4)
    args, environment = container_process(runtime, http_port, upstream_port, grpc_port, metrics_port)
    env = [item for key, value in environment.items() for item in ("--env", f"{key}={value}")]
    name = f"tiergate-serving-test-{http_port}"
    started = subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp:rw,exec",
         *(item for mount in runtime["volumeMounts"] if mount["mountPath"] != "/dev/shm"
           for item in ("--tmpfs", f"{mount['mountPath']}:rw,exec")),
         "--shm-size", "256m", "-v", f"{repository}:/mnt/models:ro", *env, runtime["image"], *args],
        capture_output=True, text=True,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        url = f"127.0.0.1:{http_port}"
        wait_ready(url, name)
        yield {"url": url, "name": name, "manifests": manifests, "version": entry["version"]}
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def wait_ready(url: str, container: str, timeout_s: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{url}/tiergate/health/ready", timeout=2).status_code == 200:  # the canary
                return
        except httpx.HTTPError:
            pass
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True, text=True)
        if state.stdout.strip() != "true":
            break
        time.sleep(1)
    logs = subprocess.run(["docker", "logs", "--tail", "40", container], capture_output=True, text=True)
    pytest.fail(f"serving container not ready at {url}:\n{logs.stdout}{logs.stderr}")


def test_the_serving_container_classifies_a_text(serving_container: dict[str, Any]) -> None:
    from tiergate.client import ModerationClient
    from tiergate.taxonomy import load_taxonomy

    client = ModerationClient(serving_container["url"], expected_labels=load_taxonomy().labels)
    assert client.model_version == serving_container["version"]
    result = client.classify("i know where you live", "general/message")[0]
    assert len(result.scores) == 33 and not result.truncated
    user = subprocess.run(["docker", "exec", serving_container["name"], "id", "-u"], capture_output=True, text=True)
    assert user.stdout.strip() == str(IMAGE_UID)


def test_the_charts_regression_job_passes_in_its_container(
    serving_container: dict[str, Any], containerised_run: dict[str, Any]
) -> None:
    """The Helm test hook's image and command, pointed at the serving container instead of the cluster DNS name."""
    job = serving_container["manifests"]["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["image"] == IMAGES.cpu
    command = list(job["command"])
    command[command.index("--url") + 1] = serving_container["url"]
    home = str(containerised_run["home"])
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp:rw,exec",
         "-v", f"{home}:{home}:ro", "--env", f"TIERGATE_HOME={home}", job["image"], *command],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "positives" in result.stdout
