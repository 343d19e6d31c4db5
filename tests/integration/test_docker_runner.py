"""The docker runner's own guarantees: real exit codes, one-line errors, a profile tasks can use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.containers import IMAGES, require_engine_and_images
from tiergate.errors import PipelineError
from tiergate.pipelines import docker_runner


def test_a_failing_task_container_reports_its_exit_code(tmp_path: Path) -> None:
    """kfp 2.17.3 would call this SUCCESS once the auto-removed container is gone (kubeflow/pipelines#13332)."""
    require_engine_and_images(IMAGES.cpu)
    client = docker_runner.docker_client()
    record = tmp_path / docker_runner.CONTAINERS_RECORD
    command = ["sh", "-c", "echo $GREETING; exit 3", "--function_to_execute", "fails"]
    try:
        code = docker_runner._run_and_read_exit(
            client,
            IMAGES.cpu,
            command,
            {},
            base_environment={"GREETING": "hello"},
            record=record,
            user="1000:1000",
            labels={"tiergate-test": tmp_path.name},
        )
    finally:
        client.close()
    assert code == 3
    assert json.loads(record.read_text()) == {"function": "fails", "image": IMAGES.cpu, "user": "1000:1000", "exit_code": 3}
    listing = ["docker", "ps", "-aq", "--filter", f"label=tiergate-test={tmp_path.name}"]
    leftovers = subprocess.run(listing, capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""  # removed once its exit code was read


def test_no_engine_is_one_line_that_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(PipelineError, match=r"no Docker engine answers at unix://.*dockerd --iptables=false"):
        docker_runner.docker_client()
    result = subprocess.run(
        [sys.executable, "-m", "tiergate.cli.main", "pipeline", "run", "--local", "--runner", "docker", "--run-id", "x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: no Docker engine answers")


def test_unknown_runner_is_refused(tmp_path: Path) -> None:
    from tiergate.pipelines.runner import run_local

    with pytest.raises(PipelineError, match="unknown runner 'podman'"):
        run_local(tmp_path / "run", runner="podman")


def test_the_tasks_profile_has_absolute_host_paths_and_the_local_images(tmp_path: Path) -> None:
    path, profile = docker_runner.container_profile("local", tmp_path, docker_runner.LocalImages(cpu="c:1", gpu="g:1"))
    assert path == tmp_path / "profile.yaml" and path.is_file()
    assert (profile.pipeline.image_cpu, profile.pipeline.image_gpu) == ("c:1", "g:1")
    assert Path(profile.publish.pvc_mount_root).is_absolute() and Path(profile.promote.repo_url).is_absolute()
    assert [folder.name for folder in docker_runner.writable_folders(profile)] == ["pvc", "gitops.git"]
