"""The compiled pipeline: up to date, and carrying what the cluster needs."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tiergate.paths import PROJECT_ROOT
from tiergate.pipelines.runner import COMPILED, compile_pipeline, submit


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = compile_pipeline(tmp_path_factory.mktemp("compiled") / "tiergate.yaml")
    return {"text": path.read_text(), "docs": list(yaml.safe_load_all(path.read_text()))}


def test_committed_yaml_is_not_stale(spec: dict[str, Any]) -> None:
    assert COMPILED.is_file(), "run `tiergate pipeline compile` and commit pipelines/compiled/tiergate.yaml"
    assert COMPILED.read_text() == spec["text"], "pipelines/compiled/tiergate.yaml is stale: run `tiergate pipeline compile`"


def _tasks(pipeline: dict[str, Any]) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    tasks.update(pipeline["root"]["dag"]["tasks"])
    for component in pipeline["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_dag_has_every_step_and_the_gate_condition(spec: dict[str, Any]) -> None:
    pipeline = spec["docs"][0]
    tasks = _tasks(pipeline)
    for name in (
        "list-categories",
        "generate",
        "merge",
        "train",
        "train-2",
        "train-3",
        "export",
        "evaluate",
        "package",
        "not-promoted",
    ):
        assert name in tasks, name
    loop = next(task for task in tasks.values() if "parameterIterator" in task)
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("list-categories-Output")
    assert loop["iteratorPolicy"]["parallelismLimit"] == 8
    conditions = [task["triggerPolicy"]["condition"] for task in tasks.values() if "triggerPolicy" in task]
    assert any("evaluate-gate_passed" in condition and not condition.startswith("!") for condition in conditions)
    collected = tasks["merge"]["inputs"]["artifacts"]["generated"]["taskOutputArtifact"]  # Collected from the loop
    assert collected["producerTask"] == "for-loop-1" and collected["outputArtifactKey"].endswith("generate-generated")
    assert tasks["train-2"]["inputs"]["artifacts"]["init"]["taskOutputArtifact"]["producerTask"] == "train"
    assert tasks["train-3"]["inputs"]["artifacts"]["init"]["taskOutputArtifact"]["producerTask"] == "train-2"


def test_gpu_resources_secret_and_cache(spec: dict[str, Any]) -> None:
    pipeline, platform = spec["docs"][0], spec["docs"][1]
    executors = pipeline["deploymentSpec"]["executors"]
    gpu = {name for name, executor in executors.items() if executor["container"].get("resources", {}).get("accelerator")}
    assert gpu == {"exec-train", "exec-train-2", "exec-train-3", "exec-export"}
    for name in gpu:
        accelerator = executors[name]["container"]["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1"
        assert executors[name]["container"]["image"].endswith("tiergate-gpu:0.1.0")
    assert executors["exec-evaluate"]["container"]["image"].endswith("tiergate-cpu:0.1.0")
    generate = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-generate"]
    assert generate["secretAsEnv"][0]["keyToEnv"] == [{"envVar": "ANTHROPIC_API_KEY", "secretKey": "api-key"}]
    assert generate["pvcMount"][0]["mountPath"] == "/cache"
    assert all("packages_to_install" not in executor["container"]["command"][2] for executor in executors.values())


def test_run_form_parameters(spec: dict[str, Any]) -> None:
    parameters = spec["docs"][0]["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {"profile", "categories", "counts", "base_model", "cache_dir", "model_version"}
    assert parameters["profile"]["defaultValue"] == "production"
    assert parameters["categories"]["defaultValue"] == ""


class FakeKfpApi(BaseHTTPRequestHandler):
    """Just enough of the KFP v2beta1 REST API for kfp.Client to create a run."""

    requests: ClassVar[list[tuple[str, str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/experiments"):
            self._reply({"experiments": [], "total_size": 0})
        else:
            self._reply({})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.requests.append(("POST", self.path, body))
        if self.path.startswith("/apis/v2beta1/experiments"):
            self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
        elif self.path.startswith("/apis/v2beta1/runs"):
            self._reply({"run_id": "run-42", "display_name": body.get("display_name"), "experiment_id": "exp-1"})
        else:
            self._reply({})


@pytest.fixture
def kfp_api() -> Iterator[str]:
    FakeKfpApi.requests = []
    server = HTTPServer(("127.0.0.1", 0), FakeKfpApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_submit_creates_a_run_over_http(kfp_api: str) -> None:
    run_id = submit(kfp_api, COMPILED, "tiergate", "nightly", {"profile": "production", "categories": "threats"})
    assert run_id == "run-42"
    runs = [body for method, path, body in FakeKfpApi.requests if method == "POST" and path.startswith("/apis/v2beta1/runs")]
    assert len(runs) == 1
    run = runs[0]
    assert run["display_name"] == "nightly"
    assert run["runtime_config"]["parameters"] == {"profile": "production", "categories": "threats"}
    assert "tiergate" in json.dumps(run["pipeline_spec"])[:100000] and "comp-evaluate" in json.dumps(run["pipeline_spec"])


@pytest.mark.parametrize(
    "path", ["components/images/Dockerfile.cpu", "components/images/Dockerfile.gpu", "serving/images/Dockerfile.triton"]
)
def test_dockerfiles_parse_and_copy_existing_files(path: str) -> None:
    parser = DockerfileParser(fileobj=io.BytesIO((PROJECT_ROOT / path).read_bytes()))
    instructions = [item for item in parser.structure if item["instruction"] != "COMMENT"]
    assert instructions[0]["instruction"] == "FROM" and parser.baseimage
    copies = [item["value"].split() for item in instructions if item["instruction"] == "COPY"]
    assert copies
    for parts in copies:
        if any(part.startswith("--from") for part in parts):
            continue
        for source in parts[:-1]:
            assert (PROJECT_ROOT / source).exists(), f"{path}: COPY source {source} does not exist"
    assert any("torch==2.13.0" in item["value"] for item in instructions if item["instruction"] == "RUN") or "triton" in path
