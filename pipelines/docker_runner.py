"""Run the pipeline locally with every task in its image: kfp.local's DockerRunner, made trustworthy.

`tiergate pipeline run --local --runner docker` runs the same DAG as the cluster, each task in
the CPU or GPU image (`make images`), as a non-root user, on a read-only root filesystem with
a writable /tmp — what a restricted Kubernetes pod gives a step. What that takes on one machine:

- DockerRunner mounts only the pipeline root, at the same path. Everything else a task reads
  or writes outside it is mounted here at its host path too: the simulated PVC of the model
  store, the local GitOps repository, a base model given as a folder.
- Paths in the profile that are relative to the project (`runs/pvc`, `runs/gitops.git`) mean
  nothing inside an image, so the run gets a resolved copy of the profile with absolute host
  paths and the local image tags, written under the pipeline root where every task sees it.
- The local GitOps repository stands in for a remote one that exists before any run, so it is
  created and seeded here on the host, not by the promote task.
- kfp 2.17.3 starts containers with auto_remove=True and reports SUCCESS when the container is
  already gone (kubeflow/pipelines#13332): a failed task could end a run green. `_trustworthy_exit`
  keeps each container until its exit code has been read.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tiergate.errors import PipelineError
from tiergate.paths import HOME_VARIABLE, project_path
from tiergate.profiles import Profile, load_profile

log = logging.getLogger(__name__)
IMAGE_UID = 1000  # the numeric non-root user of every tiergate image (ARG UID in the Dockerfiles)
ENGINE_HELP = "start one (as root): dockerd --iptables=false --bridge=none &  — or point DOCKER_HOST at a running engine"


@dataclass(frozen=True)
class LocalImages:
    """The image tags the tasks run in; `make images` builds these."""

    cpu: str = "tiergate-cpu:local"
    gpu: str = "tiergate-gpu:local"
    triton: str = "tiergate-triton:local"  # not a pipeline task: the serving container (tests, README)


def docker_client() -> Any:
    """A client for the engine, or one line saying how to start one."""
    try:
        import docker
    except ImportError:
        raise PipelineError("--runner docker needs the docker package: pip install 'tiergate[docker]'") from None

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        reason = str(error).splitlines()[0][:160]
        raise PipelineError(f"no Docker engine answers at {where} ({reason}); {ENGINE_HELP}") from None
    return client


def require_images(client: Any, images: LocalImages) -> None:
    """Every image the pipeline names must exist locally (DockerRunner would otherwise try to pull it)
    and hold the library of this checkout: each task's wrapper is compiled from here, its imports
    come from the image (pipelines/source_digest.py)."""
    import docker

    from tiergate.pipelines.source_digest import LABEL, source_digest

    missing, stale = [], []
    here = source_digest()
    for image in dict.fromkeys((images.cpu, images.gpu)):
        try:
            labels = client.images.get(image).labels or {}
        except docker.errors.ImageNotFound:
            missing.append(image)
            continue
        if labels.get(LABEL) != here:
            stale.append(image)
    if missing:
        raise PipelineError(f"image {', '.join(missing)} not found in the Docker engine; build the images with `make images`")
    if stale:
        raise PipelineError(
            f"image {', '.join(stale)} holds other tiergate sources than this checkout (code or config changed since it "
            'was built); rebuild: make images IMAGES="cpu gpu"'
        )


def container_user() -> str:
    """The caller's uid:gid when it is not root (files stay theirs); else the images' user with group 0.

    Group 0 is the OpenShift convention for an arbitrary non-root uid: the folders a task writes
    are made group-writable (`share_with_tasks`) instead of changing their owner, so nothing on
    the host changes hands — a root `make run` beside it, or a run killed half-way, finds its
    GitOps repository and store exactly as it left them.
    """
    uid = os.getuid()
    return f"{uid}:{os.getgid()}" if uid != 0 else f"{IMAGE_UID}:0"


def container_profile(profile: str, root: Path, images: LocalImages) -> tuple[Path, Profile]:
    """Write the resolved profile with absolute host paths and the local image tags under `root`."""
    from tiergate.components.promote.gitops import is_local

    resolved = load_profile(profile)
    data = resolved.model_dump(mode="json")
    data["pipeline"].update(image_cpu=images.cpu, image_gpu=images.gpu)
    if resolved.publish.store.startswith("pvc://"):
        data["publish"]["pvc_mount_root"] = str(project_path(resolved.publish.pvc_mount_root).resolve())
    if is_local(resolved.promote.repo_url):
        data["promote"]["repo_url"] = str(project_path(resolved.promote.repo_url).resolve())
    path = root / "profile.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path, load_profile(str(path))


def writable_folders(profile: Profile) -> list[Path]:
    """Host folders tasks write to outside the pipeline root: the simulated PVC, the local GitOps repository."""
    from tiergate.components.promote.gitops import is_local

    folders = []
    if profile.publish.store.startswith("pvc://"):
        folders.append(Path(profile.publish.pvc_mount_root))
    if is_local(profile.promote.repo_url):
        folders.append(Path(profile.promote.repo_url))
    return folders


def share_with_tasks(folders: list[Path]) -> None:
    """Make the folders tasks write to group-writable (the tasks run with group 0); only when we are root."""
    if os.getuid() != 0:
        return
    for folder in folders:
        for current, _dirs, files in os.walk(folder):
            os.chmod(current, os.stat(current).st_mode | 0o070)
            for name in files:
                path = os.path.join(current, name)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode | 0o060)


def task_environment() -> dict[str, str]:
    """What the host passes on to every task: a config override ($TIERGATE_HOME), mounted read-only."""
    home = os.environ.get(HOME_VARIABLE)
    return {HOME_VARIABLE: str(Path(home).resolve())} if home else {}


def base_model_folder(profile: Profile, base_model: str) -> Path | None:
    """The base model when it is a folder on this machine (mounted read-only into the train tasks)."""
    model = Path(base_model or profile.train.base_model).expanduser()
    if not model.is_dir():
        return None
    if not model.is_absolute():
        raise PipelineError(f"base model folder {model} must be an absolute path to be mounted into the tasks")
    return model


def let_read(folder: Path) -> None:
    """Root's read-only inputs must be readable by the tasks' user (transformers writes weights 0600)."""
    if os.getuid() != 0:
        return
    for current, _dirs, files in os.walk(folder):
        os.chmod(current, os.stat(current).st_mode | 0o555)
        for name in files:
            path = os.path.join(current, name)
            os.chmod(path, os.stat(path).st_mode | 0o444)


def mounts(profile: Profile, base_model: str, inputs: Sequence[Path] = ()) -> list[Any]:
    """Bind mounts at the host paths: the writable folders; a base model folder, $TIERGATE_HOME and the
    run's input folders (public data, a previous model, a feedback export) read-only."""
    from docker.types import Mount

    result = [Mount(target=str(folder), source=str(folder), type="bind") for folder in writable_folders(profile)]
    for home in task_environment().values():
        result.append(Mount(target=home, source=home, type="bind", read_only=True))
    model = base_model_folder(profile, base_model)
    for folder in [*([model] if model is not None else []), *inputs]:
        result.append(Mount(target=str(folder), source=str(folder), type="bind", read_only=True))
    return result


def prepare(
    profile_name: str, root: Path, base_model: str, images: LocalImages, inputs: Sequence[Path] = ()
) -> tuple[Path, Profile, Any]:
    """Check the engine and images, write the run's profile, seed the GitOps repository; return the runner.

    `inputs`: absolute folders on this machine the tasks read (public data, a previous model, a feedback export)."""
    from kfp import local

    from tiergate.components.promote.gitops import ensure_local_repository, is_local

    client = docker_client()
    require_images(client, images)
    client.close()
    profile_path, profile = container_profile(profile_name, root, images)
    for folder in writable_folders(profile):
        if folder.suffix != ".git":
            folder.mkdir(parents=True, exist_ok=True)
    if is_local(profile.promote.repo_url):
        ensure_local_repository(profile.promote)
    share_with_tasks([root, *writable_folders(profile)])
    model = base_model_folder(profile, base_model)
    for folder in [*([model] if model is not None else []), *inputs]:
        let_read(folder)
    runner = local.DockerRunner(
        user=container_user(),
        read_only=True,  # what a restricted pod gives a step: only /tmp and the mounts are writable
        tmpfs={"/tmp": "rw,exec"},
        mounts=mounts(profile, base_model, inputs),
    )
    return profile_path, profile, runner


def _run_and_read_exit(
    client: Any,
    image: str,
    command: list[str],
    volumes: dict[str, Any],
    *,
    base_environment: dict[str, str],
    record: Path,
    **run_args: Any,
) -> int:
    """kfp's run_docker_container, but the container is removed only after its exit code is read.

    The task's own variables (kfp passes them as `environment`) are added to the host's.
    """
    import docker
    from kfp.local.docker_task_handler import add_latest_tag_if_not_present

    image = add_latest_tag_if_not_present(image)
    environment = {**base_environment, **(run_args.pop("environment", None) or {})}
    container = client.containers.run(
        image=image,
        command=command,
        detach=True,
        stdout=True,
        stderr=True,
        volumes=volumes,
        auto_remove=False,
        environment=environment,
        **run_args,
    )
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        exit_code = int(container.wait()["StatusCode"])
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    _record(record, image, command, run_args.get("user"), exit_code)
    return exit_code


def _record(record: Path, image: str, command: list[str], user: str | None, exit_code: int) -> None:
    """One line per task container: which function ran, in which image, as whom, and how it ended."""
    function = command[command.index("--function_to_execute") + 1] if "--function_to_execute" in command else None
    line = {"function": function, "image": image, "user": user, "exit_code": exit_code}
    with record.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


CONTAINERS_RECORD = "containers.jsonl"


@contextlib.contextmanager
def trustworthy_exit_codes(root: Path) -> Iterator[None]:
    """While the pipeline runs, tasks report their real exit code (kubeflow/pipelines#13332).

    Each task container is also recorded in `<root>/containers.jsonl` (function, image, user, exit code).
    """
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = functools.partial(
        _run_and_read_exit, base_environment=task_environment(), record=root / CONTAINERS_RECORD
    )
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original
