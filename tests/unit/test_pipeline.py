"""The compiled pipeline: up to date, and carrying what the cluster needs."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tiergate.pipelines.runner import COMPILED, compile_pipeline


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
    conditions = [task["triggerPolicy"]["condition"] for task in tasks.values() if "condition" in task.get("triggerPolicy", {})]
    assert any("evaluate-gate_passed" in condition and not condition.startswith("!") for condition in conditions)
    collected = tasks["merge"]["inputs"]["artifacts"]["generated"]["taskOutputArtifact"]  # Collected from the loop
    assert collected["producerTask"].startswith("for-loop-") and collected["outputArtifactKey"].endswith("generate-generated")
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
    assert generate["pvcMount"][0]["mountPath"] == "/cache"
    assert all("packages_to_install" not in executor["container"]["command"][2] for executor in executors.values())


def test_run_form_parameters(spec: dict[str, Any]) -> None:
    parameters = spec["docs"][0]["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {
        "profile",
        "categories",
        "counts",
        "base_model",
        "cache_dir",
        "model_version",
        "public_data",
        "previous_model",
        "feedback_data",
    }
    assert parameters["profile"]["defaultValue"] == "production"
    assert parameters["categories"]["defaultValue"] == ""
    assert parameters["public_data"]["defaultValue"] == "" and parameters["previous_model"]["defaultValue"] == ""
    assert "s3://" in parameters["public_data"]["description"]
    assert parameters["feedback_data"]["defaultValue"] == ""
    assert "s3://" in parameters["feedback_data"]["description"]
    assert "tiergate feedback export" in parameters["feedback_data"]["description"]


def test_feedback_data_reaches_merge_like_public_data(spec: dict[str, Any]) -> None:
    """The feedback location is read by its own uncached task (the files behind one name change between runs),
    whose dataset is another merge input, exactly as the public-data location's import task."""
    tasks = _tasks(spec["docs"][0])
    for reader, parameter, output in (
        ("import-feedback-data", "feedback_data", "feedback"),
        ("import-public-data", "public_data", "public"),
    ):
        task = tasks[reader]
        assert task["inputs"]["parameters"][parameter] == {"componentInputParameter": f"pipelinechannel--{parameter}"}
        assert task["cachingOptions"].get("enableCache", False) is False
        consumed = tasks["merge"]["inputs"]["artifacts"][output]["taskOutputArtifact"]
        assert consumed == {"outputArtifactKey": output, "producerTask": reader}


# --- the run form and what the cluster needs (compiled with the production profile) ---------------------------

NETWORKED = {"generate", "publish", "promote"}
NEVER_CACHED = {"config-digest", "list-categories", "publish", "promote", "run-summary"}


def _k8s(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["docs"][1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_every_run_parameter_has_a_description(spec: dict[str, Any]) -> None:
    parameters = spec["docs"][0]["root"]["inputDefinitions"]["parameters"]
    for name, parameter in parameters.items():
        assert len(parameter.get("description", "")) > 20, f"run parameter {name!r} has no description in the run form"
    assert "comma-separated" in parameters["categories"]["description"].lower()


def test_every_task_has_a_display_name(spec: dict[str, Any]) -> None:
    tasks = _tasks(spec["docs"][0])
    names = {key: task["taskInfo"]["name"] for key, task in tasks.items() if "componentRef" in task and key.startswith(
        ("config", "list", "generate", "merge", "train", "export", "evaluate", "package", "publish", "promote", "not", "run")
    )}
    assert len(names) == 14, names
    unnamed = [key for key, name in names.items() if name == key]
    assert unnamed == [], f"tasks without a display name: {unnamed}"
    assert names["train-3"] == "train phase3" and names["run-summary"] == "run summary"


def test_network_steps_retry_with_backoff_and_others_do_not(spec: dict[str, Any]) -> None:
    tasks = _tasks(spec["docs"][0])
    retried = {key for key, task in tasks.items() if "retryPolicy" in task}
    assert retried == NETWORKED
    for key in NETWORKED:
        policy = tasks[key]["retryPolicy"]
        assert policy == {"maxRetryCount": 3, "backoffDuration": "30s", "backoffFactor": 2.0, "backoffMaxDuration": "600s"}


def test_local_profile_compiles_without_retries(tmp_path: Any) -> None:
    """A local run's offline generator and local store fail the same way twice: retries only delay the error."""
    path = compile_pipeline(tmp_path / "local.yaml", "local")
    assert "retryPolicy" not in path.read_text()


def test_exit_handler_records_the_run_summary(spec: dict[str, Any]) -> None:
    root = spec["docs"][0]["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "run-summary"}, "every step runs inside the exit handler"
    summary = root["run-summary"]
    assert summary["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert summary["inputs"]["parameters"]["status"]["taskFinalStatus"]["producerTask"] == "exit-handler-1"
    assert "summary" in spec["docs"][0]["components"]["comp-run-summary"]["outputDefinitions"]["artifacts"]
    inner = spec["docs"][0]["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert {"config-digest", "list-categories", "merge", "train", "export", "evaluate"} <= set(inner)


def test_caching_is_keyed_on_the_config_digest_and_side_effects_are_never_cached(spec: dict[str, Any]) -> None:
    tasks = _tasks(spec["docs"][0])
    steps = {key: task for key, task in tasks.items() if "componentRef" in task and key in {
        "config-digest", "list-categories", "generate", "merge", "train", "train-2", "train-3", "export", "evaluate",
        "package", "publish", "promote", "not-promoted", "run-summary",
    }}
    for key, task in steps.items():
        enabled = task.get("cachingOptions", {}).get("enableCache", False)
        assert enabled == (key not in NEVER_CACHED), f"{key}: caching {'on' if enabled else 'off'}"
    digest = {"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "config-digest"}}
    for key in ("merge", "train", "train-2", "train-3", "list-categories"):
        assert tasks[key]["inputs"]["parameters"]["config_digest"] == digest, key
    # generate gets it with its loop item (kfp.local resolves other task outputs inside a loop wrongly)
    generate = tasks["generate"]["inputs"]["parameters"]["config_digest"]
    assert generate["parameterExpressionSelector"] == 'parseJson(string_value)["config_digest"]'


def test_gpu_tasks_get_the_production_node_selector_and_tolerations(spec: dict[str, Any]) -> None:
    from tiergate.profiles import load_profile

    settings = load_profile("production").pipeline
    assert settings.node_selector and settings.tolerations, "config/profiles/production.yaml has a pipeline section"
    executors = _k8s(spec)
    placed = {name for name, executor in executors.items() if "nodeSelector" in executor or "tolerations" in executor}
    assert placed == {"exec-train", "exec-train-2", "exec-train-3", "exec-export"}
    for name in placed:
        assert executors[name]["nodeSelector"]["labels"] == settings.node_selector
        assert executors[name]["tolerations"] == [dict(sorted(item.items())) for item in settings.tolerations]


def test_each_task_gets_its_credentials_from_a_secret(spec: dict[str, Any]) -> None:
    executors = _k8s(spec)
    secrets = {name: executor["secretAsEnv"] for name, executor in executors.items() if "secretAsEnv" in executor}
    # The store's credentials also reach the tasks that read the public data or the previous model from it.
    store_readers = {"exec-import-public-data", "exec-import-feedback-data", "exec-merge", "exec-evaluate", "exec-publish"}
    assert set(secrets) == {"exec-generate", "exec-promote", *store_readers}
    for reader in store_readers:
        assert secrets[reader] == secrets["exec-publish"]
    (anthropic,) = secrets["exec-generate"]
    assert anthropic["secretName"] == "anthropic-api-key" and anthropic["optional"] is False
    assert anthropic["keyToEnv"] == [{"envVar": "ANTHROPIC_API_KEY", "secretKey": "api-key"}]
    (store,) = secrets["exec-publish"]
    assert store["secretName"] == "tiergate-object-store"
    assert {item["envVar"] for item in store["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    (gitops,) = secrets["exec-promote"]
    assert gitops["secretName"] == "tiergate-gitops"
    assert gitops["keyToEnv"] == [{"envVar": "TIERGATE_GIT_TOKEN", "secretKey": "token"}]
    assert "sk-ant" not in spec["text"]  # no key is ever compiled in


def test_a_pvc_store_is_mounted_for_publish_instead_of_credentials(tmp_path: Any) -> None:
    path = compile_pipeline(tmp_path / "local.yaml", "local")
    executors = list(yaml.safe_load_all(path.read_text()))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-publish"]["pvcMount"][0]["mountPath"] == "runs/pvc/tiergate-models"
    assert "secretAsEnv" not in executors["exec-publish"]
    for reader in ("exec-import-public-data", "exec-import-feedback-data"):  # pvc:// locations are read on the claim
        assert executors[reader]["pvcMount"] == executors["exec-publish"]["pvcMount"]
