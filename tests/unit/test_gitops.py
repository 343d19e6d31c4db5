"""Publish (local path and S3 on loopback), the Helm chart (real Helm), promotion with real git."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_python import Chart, HelmError
from helm_python.chart import lint

from tests.helm_helpers import operator_inferenceservice
from tests.trust_helpers import make_repository
from tiergate.components.promote.gitops import commit_and_push, history
from tiergate.components.promote.step import promote, rollback
from tiergate.components.publish.step import publish_repository
from tiergate.errors import GitOpsError, PromotionRefused, PublishError
from tiergate.gate import load_gate
from tiergate.hashing import read_json, write_json
from tiergate.k8s_validation import validate_text
from tiergate.paths import PROJECT_ROOT
from tiergate.profiles import PromoteSettings, PublishSettings, load_profile
from tiergate.store import fetch_repository

CHART = PROJECT_ROOT / "charts" / "tiergate-serving"


def local_publish(tmp_path: Path) -> PublishSettings:
    return load_profile("local", {"publish": {"pvc_mount_root": str(tmp_path / "pvc")}}).publish


def test_publish_is_content_addressed_verified_and_never_overwrites(tmp_path: Path) -> None:
    settings = local_publish(tmp_path)
    repo = make_repository(tmp_path / "r1", "v1")
    first = publish_repository(repo, settings)
    digest = json.loads((repo / "repository.json").read_text())["digest"]
    assert first["uri"] == f"pvc://tiergate-models/store/tiergate/v1/{digest}" and not first["already_published"]
    stored = tmp_path / "pvc" / "tiergate-models" / "store" / "tiergate" / "v1" / digest
    assert (stored / "classifier" / "1" / "model.onnx").read_text() == "weights"
    assert publish_repository(repo, settings)["already_published"]  # same content: a no-op
    other = make_repository(tmp_path / "r2", "v1", payload="different weights")
    with pytest.raises(PublishError, match=r"already published .* never overwritten"):
        publish_repository(other, settings)


def test_publish_redoes_an_incomplete_upload(tmp_path: Path) -> None:
    settings = local_publish(tmp_path)
    repo = make_repository(tmp_path / "r", "v2")
    digest = json.loads((repo / "repository.json").read_text())["digest"]
    partial = tmp_path / "pvc" / "tiergate-models" / "store" / "tiergate" / "v2" / digest / "classifier"
    partial.mkdir(parents=True)
    (partial / "config.pbtxt").write_text("half")  # a crash before the version was marked published
    result = publish_repository(repo, settings)
    assert not result["already_published"]
    assert (partial / "config.pbtxt").read_text() == 'name: "classifier"\n'
    version_dir = partial.parent.parent
    assert sorted(p.name for p in version_dir.iterdir()) == [".publish.lock", digest, "published.json"]  # no staging left


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_publish_to_s3_on_loopback(tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="models")
    settings = PublishSettings(
        store="s3://models/tiergate", pvc_mount_root="unused", storage_options={"client_kwargs": {"endpoint_url": s3_endpoint}}
    )
    repo = make_repository(tmp_path / "r", "v3")
    result = publish_repository(repo, settings)
    assert result["uri"].startswith("s3://models/tiergate/tiergate/v3/")
    keys = {item["Key"] for item in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="models")["Contents"]}
    assert {f"tiergate/tiergate/v3/{result['digest']}/{name}" for name in ("repository.json", "classifier/1/model.onnx")} <= keys
    assert publish_repository(repo, settings)["already_published"]
    assert not any(".staging-" in key for key in keys) and "tiergate/tiergate/v3/published.json" in keys
    fetched = fetch_repository(result["uri"], tmp_path / "mnt", settings)  # the load-side check reads S3 too
    assert fetched.manifest.digest == result["digest"]
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    key = f"tiergate/tiergate/v3/{result['digest']}/classifier/1/model.onnx"
    client.put_object(Bucket="models", Key=key, Body=b"0" * 16)  # the stored copy corrupted behind our back
    with pytest.raises(PublishError, match=r"no longer verifies .*model\.onnx has sha256"):
        publish_repository(repo, settings)
    with pytest.raises(PromotionRefused, match=r"model\.onnx has sha256"):
        fetch_repository(result["uri"], tmp_path / "mnt2", settings)
    assert not (tmp_path / "mnt2").exists() or not any((tmp_path / "mnt2").iterdir())


VALUES = {
    "model": {"version": "v1", "storageUri": "s3://models/tiergate/v1/" + "a" * 64, "digest": "a" * 64, "gateDigest": "c" * 64}
}
MODERATION_MODEL = "tiergate-serving/templates/moderationmodel.yaml"


def test_chart_renders_valid_manifests_and_no_inferenceservice() -> None:
    rendered = Chart.load(str(CHART)).render(VALUES, name="tiergate", namespace="moderation")
    documents = 0
    for name, text in rendered.items():
        if name.endswith(".yaml") and text.strip():
            documents += validate_text(text)
    assert documents == 4  # ServingRuntime, ModerationModel, NetworkPolicy, regression Job
    assert "kind: InferenceService" not in "".join(rendered.values())  # the operator's, not the chart's
    resource = yaml.safe_load(rendered[MODERATION_MODEL])
    assert resource["spec"]["model"] == {"name": "tiergate", **VALUES["model"]}
    isvc = operator_inferenceservice(resource, "moderation")  # what the operator makes of it validates too
    validate_text(yaml.safe_dump(isvc))
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == VALUES["model"]["storageUri"]
    assert isvc["metadata"]["annotations"]["tiergate.io/repository-digest"] == "sha256:" + "a" * 64
    job = yaml.safe_load(rendered["tiergate-serving/templates/tests/regression-test.yaml"])
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert not [key for key in job["metadata"]["annotations"] if key.startswith("argocd.argoproj.io/")]  # no PostSync
    assert lint(str(CHART), VALUES)["errors"] == []


def test_the_rendered_runtime_starts_triton_only_on_a_repository_that_verifies(tmp_path: Path) -> None:
    """The ServingRuntime's entrypoint, run as rendered (with /mnt/models pointed at a local copy)."""
    repo = make_repository(tmp_path / "models", "v1")
    digest = read_json(repo / "repository.json")["digest"]
    values = {"model": {**VALUES["model"], "digest": digest}}
    rendered = Chart.load(str(CHART)).render(values, name="tiergate", namespace="moderation")
    runtime = yaml.safe_load(rendered["tiergate-serving/templates/servingruntime.yaml"])["spec"]["containers"][0]
    isvc = operator_inferenceservice(yaml.safe_load(rendered[MODERATION_MODEL]), "moderation")
    env = {item["name"]: item["value"] for item in isvc["spec"]["predictor"]["model"]["env"]}
    assert env["TIERGATE_EXPECTED_DIGEST"] == digest and runtime["args"][:2] == ["tiergate", "gateway"]
    command = [str(repo) if part == "/mnt/models" else part for part in runtime["command"]]
    command = [sys.executable, "-m", "tiergate.cli.main", *command[1:], sys.executable, "-c", "print('triton started')"]

    def start(expected: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TIERGATE_EXPECTED_DIGEST": expected})

    started = start(env["TIERGATE_EXPECTED_DIGEST"])
    assert started.returncode == 0 and "triton started" in started.stdout, started.stderr
    refused = start("b" * 64)  # the InferenceService names another version than the bytes in /mnt/models
    assert refused.returncode == 2 and "triton started" not in refused.stdout
    assert refused.stderr.count("\n") == 1 and "is not the expected" in refused.stderr


def test_chart_options_render() -> None:
    values = {
        **VALUES,
        "predictor": {"minReplicas": 2, "maxReplicas": 6, "gpu": 0},
        "serving": {"optionalDisabled": ["anti_trans"], "gateKeySecret": "tiergate-gate-key"},
        "runtime": {"create": False, "name": "x", "image": "y"},
        "rollout": {"steps": [25, 100], "analysis": {"suites": [{"name": "positives", "minPassRate": 0.9}]}},
    }
    rendered = Chart.load(str(CHART)).render(values, name="tiergate", namespace="moderation")
    resource = yaml.safe_load(rendered[MODERATION_MODEL])
    assert resource["spec"]["rollout"]["steps"] == [25, 100]
    assert resource["spec"]["rollout"]["analysis"]["suites"] == [{"name": "positives", "minPassRate": 0.9}]
    isvc = operator_inferenceservice(resource, "moderation")
    predictor = isvc["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor and predictor["minReplicas"] == 2
    assert predictor["model"]["runtime"] == "x"
    assert "nvidia.com/gpu" not in predictor["model"]["resources"]["limits"]
    env = {item["name"]: item.get("value") for item in predictor["model"]["env"]}
    assert env["TIERGATE_OPTIONAL_DISABLED"] == '["anti_trans"]'
    key = next(item for item in predictor["model"]["env"] if item["name"] == "TIERGATE_GATE_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "tiergate-gate-key", "key": "key"}
    assert not rendered.get("tiergate-serving/templates/servingruntime.yaml", "").strip()
    validate_text(rendered[MODERATION_MODEL])
    validate_text(yaml.safe_dump(isvc))


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"model": {**VALUES["model"], "digest": "not-a-digest"}}, "digest"),
        ({"model": {**VALUES["model"], "version": ""}}, "version"),
        ({"model": {**VALUES["model"], "storageUri": "file:///tmp/x"}}, "storageUri"),
        ({"model": {**VALUES["model"], "gateDigest": "not-a-digest"}}, "gateDigest"),
        ({"model": {key: value for key, value in VALUES["model"].items() if key != "gateDigest"}}, "gateDigest"),
        ({**VALUES, "predictor": {"minReplicas": 1, "maxReplicas": 2, "canaryTrafficPercent": 50}}, "canaryTrafficPercent"),
        ({**VALUES, "surprise": True}, "surprise"),
    ],
)
def test_bad_values_fail_at_render_time(values: dict[str, Any], key: str) -> None:
    with pytest.raises(HelmError) as caught:
        Chart.load(str(CHART)).render(values, name="tiergate", namespace="moderation")
    assert key in str(caught.value)


@pytest.fixture
def gitops(tmp_path: Path) -> PromoteSettings:
    return load_profile("local", {"promote": {"repo_url": str(tmp_path / "gitops.git")}}).promote


def _published(tmp_path: Path, version: str) -> tuple[Path, Path, dict[str, Any]]:
    repo = make_repository(tmp_path / f"repo-{version}", version, payload=f"weights {version}")
    evaluation = tmp_path / f"eval-{version}"
    write_json(evaluation / "gate.json", read_json(repo / "gate.json"))
    published = publish_repository(repo, local_publish(tmp_path))
    return evaluation, repo, published


def _promote(
    settings: PromoteSettings, tmp_path: Path, evaluation: Path, repo: Path, published: dict[str, Any], run: str
) -> dict[str, Any]:
    return promote(settings, local_publish(tmp_path), evaluation, repo, published, run)


def _values(settings: PromoteSettings, tmp_path: Path) -> dict[str, Any]:
    clone = tmp_path / "inspect"
    subprocess.run(["git", "clone", "-q", settings.repo_url, str(clone)], check=True)
    values = yaml.safe_load((clone / settings.values_path).read_text())
    subprocess.run(["rm", "-rf", str(clone)], check=True)
    return values


def test_promote_commits_once_and_is_idempotent(gitops: PromoteSettings, tmp_path: Path) -> None:
    evaluation, repo, published = _published(tmp_path, "v1")
    result = _promote(gitops, tmp_path, evaluation, repo, published, "run-7")
    assert result["changed"]
    gate_digest = read_json(repo / "repository.json")["gate_digest"]
    assert gate_digest == load_gate(evaluation).digest()
    assert _values(gitops, tmp_path)["model"] == {
        "name": "tiergate",
        "version": "v1",
        "storageUri": published["uri"],
        "digest": published["digest"],
        "gateDigest": gate_digest,
    }
    message = subprocess.run(
        ["git", "--git-dir", gitops.repo_url, "log", "-1", "--format=%B"], capture_output=True, text=True
    ).stdout
    assert message.startswith(f"promote tiergate v1 ({published['digest'][:12]})")
    positives = load_gate(evaluation).summary.regression["positives"]  # the suite line the gate recorded
    assert "macro F1 0.9512" in message and f"positives {positives}" in message and "run: run-7" in message
    again = _promote(gitops, tmp_path, evaluation, repo, published, "run-7")
    assert not again["changed"] and again["commit"] == result["commit"]


def test_promote_refuses_without_a_passing_gate(gitops: PromoteSettings, tmp_path: Path) -> None:
    evaluation, repo, published = _published(tmp_path, "v1")
    gate = read_json(evaluation / "gate.json")
    write_json(evaluation / "gate.json", {**gate, "passed": False, "decision": "reject"})
    with pytest.raises(PromotionRefused, match=r"says passed=False, decision='reject', but its rules say promote"):
        _promote(gitops, tmp_path, evaluation, repo, published, "run")
    write_json(evaluation / "gate.json", {**gate, "judged": {**gate["judged"], "model_sha256": "0" * 64}})
    with pytest.raises(PromotionRefused, match="not built from the artifacts this gate judged"):
        _promote(gitops, tmp_path, evaluation, repo, published, "run")
    write_json(evaluation / "gate.json", gate)
    with pytest.raises(PromotionRefused, match="published digest"):
        _promote(gitops, tmp_path, evaluation, repo, {**published, "digest": "b" * 64}, "run")
    assert load_gate(evaluation).passed
    assert not Path(gitops.repo_url).exists()  # nothing was even created


def test_push_race_retries_on_top_of_the_other_promotion(gitops: PromoteSettings, tmp_path: Path) -> None:
    evaluation1, repo1, published1 = _published(tmp_path, "v1")
    evaluation2, repo2, published2 = _published(tmp_path, "v2")
    _promote(gitops, tmp_path, evaluation1, repo1, published1, "seed")
    raced = {"done": False}

    def racing_edit(values: dict[str, Any]) -> dict[str, Any]:
        if not raced["done"]:  # another promoter pushes while we hold our clone
            raced["done"] = True
            _promote(gitops, tmp_path, evaluation2, repo2, published2, "other")
        return {
            **values,
            "model": {
                **values["model"],
                "version": "v3",
                "digest": "c" * 64,
                "storageUri": "s3://models/tiergate/v3/" + "c" * 64,
            },
        }

    result = commit_and_push(gitops, racing_edit, "promote tiergate v3")
    assert result["changed"] and result["attempts"] == 2
    versions = [entry["version"] for entry in history(gitops)]
    assert versions[:3] == ["v3", "v2", "v1"]


def test_branch_mode_leaves_main_alone(gitops: PromoteSettings, tmp_path: Path) -> None:
    evaluation, repo, published = _published(tmp_path, "v1")
    _promote(gitops, tmp_path, evaluation, repo, published, "seed")
    settings = gitops.model_copy(update={"mode": "branch"})
    evaluation2, repo2, published2 = _published(tmp_path, "v2")
    result = _promote(settings, tmp_path, evaluation2, repo2, published2, "run")
    assert result["branch"] == "promote/v2"
    assert _values(gitops, tmp_path)["model"]["version"] == "v1"


def test_rollback_and_history(gitops: PromoteSettings, tmp_path: Path) -> None:
    for version in ("v1", "v2"):
        evaluation, repo, published = _published(tmp_path, version)
        _promote(gitops, tmp_path, evaluation, repo, published, "run")
    result = rollback(gitops, local_publish(tmp_path), "v1")
    assert result["changed"]
    model = _values(gitops, tmp_path)["model"]
    assert model["version"] == "v1"
    v1_gate = read_json(tmp_path / "repo-v1" / "repository.json")["gate_digest"]
    assert model["gateDigest"] == v1_gate == history(gitops)[0]["gateDigest"]
    entries = history(gitops)
    assert [entry["version"] for entry in entries][:3] == ["v1", "v2", "v1"]
    assert entries[0]["subject"].startswith("rollback to v1")
    assert not rollback(gitops, local_publish(tmp_path), "v1")["changed"]  # already current
    with pytest.raises(GitOpsError, match="never promoted here; known: v1, v2"):
        rollback(gitops, local_publish(tmp_path), "v9")


def test_rollback_takes_the_gate_digest_from_the_verified_manifest(
    gitops: PromoteSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A promotion from before gateDigest existed rolls back with the digest its verified manifest names; a
    recorded gateDigest that differs from it is refused."""
    from tiergate.components.promote import step

    for version in ("v1", "v2"):
        evaluation, repo, published = _published(tmp_path, version)
        _promote(gitops, tmp_path, evaluation, repo, published, "run")
    recorded = history(gitops)
    v1_gate = read_json(tmp_path / "repo-v1" / "repository.json")["gate_digest"]
    forged = [{**entry, "gateDigest": "d" * 64} if entry["version"] == "v1" else entry for entry in recorded]
    monkeypatch.setattr(step, "history", lambda settings: forged)
    with pytest.raises(PromotionRefused, match=r"cannot roll back to v1: its manifest names gate record"):
        rollback(gitops, local_publish(tmp_path), "v1")
    older = [{**entry, "gateDigest": None} if entry["version"] == "v1" else entry for entry in recorded]
    monkeypatch.setattr(step, "history", lambda settings: older)
    assert rollback(gitops, local_publish(tmp_path), "v1")["changed"]
    assert _values(gitops, tmp_path)["model"]["gateDigest"] == v1_gate


def test_a_local_repository_seeded_by_an_older_tiergate_gets_this_chart(gitops: PromoteSettings, tmp_path: Path) -> None:
    """`make run` after the chart changed (here: the schema before `model.gateDigest`): the local GitOps
    repository tiergate seeded takes this tiergate's chart in the promotion's commit, instead of refusing."""
    from tiergate.components.promote.gitops import CHART_SOURCE, ensure_local_repository

    ensure_local_repository(gitops)
    old = tmp_path / "old-seed"
    subprocess.run(["git", "clone", "-q", gitops.repo_url, str(old)], check=True)
    schema = old / gitops.chart_path / "values.schema.json"
    schema.write_text(schema.read_text().replace('"gateDigest"', '"gateDigestOld"'))
    for command in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "old chart"], ["push", "-q"]):
        subprocess.run(["git", *command], cwd=old, check=True)
    evaluation, repo, published = _published(tmp_path, "v1")
    assert _promote(gitops, tmp_path, evaluation, repo, published, "run-1")["changed"]
    clone = tmp_path / "after"
    subprocess.run(["git", "clone", "-q", gitops.repo_url, str(clone)], check=True)
    assert (clone / gitops.chart_path / "values.schema.json").read_text() == (CHART_SOURCE / "values.schema.json").read_text()
    message = subprocess.run(["git", "log", "-1", "--format=%B"], cwd=clone, capture_output=True, text=True).stdout
    assert "updated to this tiergate's chart" in message


def test_a_remote_repositorys_chart_is_never_touched_and_the_refusal_says_why(tmp_path: Path) -> None:
    from tiergate.components.promote.gitops import render_and_validate

    settings = load_profile("local", {"promote": {"repo_url": "https://example.com/gitops.git"}}).promote
    work = tmp_path / "work"
    shutil.copytree(CHART, work / settings.chart_path)
    schema = work / settings.chart_path / "values.schema.json"
    schema.write_text(schema.read_text().replace('"gateDigest"', '"gateDigestOld"'))
    with pytest.raises(GitOpsError, match="older than this tiergate's chart"):
        render_and_validate(work, settings, VALUES)


def test_an_installed_tiergate_without_the_chart_leaves_the_local_repository_as_it_is(
    gitops: PromoteSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In an image TIERGATE_HOME holds no charts/: there is nothing to offer, and promotion goes on as before."""
    from tiergate.components.promote import gitops as module

    module.ensure_local_repository(gitops)
    monkeypatch.setattr(module, "CHART_SOURCE", tmp_path / "no-charts-here")
    work = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", gitops.repo_url, str(work)], check=True)
    assert module.sync_local_chart(work, gitops) is False
    assert (work / gitops.chart_path / "Chart.yaml").is_file()
