"""Compile the pipeline for the cluster, run the same pipeline locally (kfp.local), or submit it to KFP."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from tiergate.artifacts import REPOSITORY_MANIFEST
from tiergate.errors import PipelineError
from tiergate.pipelines.docker_runner import LocalImages
from tiergate.profiles import load_profile

log = logging.getLogger(__name__)
COMPILED = Path(__file__).resolve().parent / "compiled" / "tiergate.yaml"  # package data: also in an installed wheel


def compile_pipeline(out: Path = COMPILED, profile: str = "production") -> Path:
    """Write the pipeline spec YAML; images, resources and GPU settings come from `profile`."""
    from kfp import compiler

    from tiergate.pipelines.tiergate_pipeline import build_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(load_profile(profile), default_profile=profile), str(out))
    return out


RUNNERS = ("subprocess", "docker")


def run_local(
    run_dir: Path,
    profile: str = "local",
    categories: str = "",
    base_model: str = "",
    model_version: str = "",
    counts: str = "",
    runner: str = "subprocess",
    images: LocalImages | None = None,
    public_data: str = "",
    previous_model: str = "",
    feedback_data: str = "",
) -> dict[str, Any]:
    """Run the pipeline with kfp.local and return where its results are.

    runner "subprocess": every task in this environment (the default main job). "docker": every
    task in its image (`make images`), as the cluster would run it (pipelines/docker_runner.py).
    `public_data`, `previous_model` and `feedback_data` are the run form's; a local folder is passed as
    an absolute path (and mounted read-only into the tasks' containers by the docker runner).
    """
    from kfp import local

    from tiergate.pipelines.tiergate_pipeline import build_pipeline

    if runner not in RUNNERS:
        raise PipelineError(f"unknown runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    run_dir = Path(run_dir).resolve()
    public_data, previous_model, feedback_data = (local_input(value) for value in (public_data, previous_model, feedback_data))
    inputs = [Path(value) for value in (public_data, previous_model, feedback_data) if value and Path(value).is_dir()]
    root = run_dir / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    trust: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if runner == "docker":
        from tiergate.pipelines import docker_runner

        profile_path, resolved, task_runner = docker_runner.prepare(profile, root, base_model, images or LocalImages(), inputs)
        profile_arg = str(profile_path)  # the resolved copy under the pipeline root, seen by every task
        trust = docker_runner.trustworthy_exit_codes(root)
    else:
        resolved, task_runner, profile_arg = load_profile(profile), local.SubprocessRunner(use_venv=False), profile
    local.init(runner=task_runner, pipeline_root=str(root), raise_on_error=True)
    pipeline = build_pipeline(resolved, default_profile=profile_arg)
    started = time.monotonic()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with trust:
        pipeline(
            profile=profile_arg,
            categories=categories,
            counts=counts,
            base_model=base_model,
            cache_dir="",
            model_version=model_version or run_dir.name,
            public_data=public_data,
            previous_model=previous_model,
            feedback_data=feedback_data,
        )
    elapsed = time.monotonic() - started
    return {"elapsed_s": round(elapsed, 1), **locate_outputs(root)}


def local_input(value: str) -> str:
    """A run input as the tasks must see it: an existing local folder absolute, anything else (a URI, empty) as given."""
    value = value.strip()
    if value and "://" not in value and Path(value).expanduser().is_dir():
        return str(Path(value).expanduser().resolve())
    return value


def newest(root: Path, pattern: str) -> Path | None:
    matches = sorted(root.glob(pattern), key=lambda path: path.stat().st_mtime)
    return matches[-1] if matches else None


def locate_outputs(root: Path) -> dict[str, Any]:
    """Find the run's key artifacts under the kfp.local pipeline root."""
    evaluation = newest(root, "*/evaluate/evaluation")
    if evaluation is None:
        raise PipelineError(f"no evaluation output under {root}; did the run reach the evaluate step?")
    repository = newest(root, "*/package/model_repository")
    not_promoted = newest(root, "*/not-promoted/result")
    return {
        "evaluation": evaluation,
        "model_repository": repository,
        "not_promoted": not_promoted,
        "promoted": repository is not None and (repository / REPOSITORY_MANIFEST).is_file(),
    }
