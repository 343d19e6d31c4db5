"""Helpers for the tests that run tiergate's images (built beforehand by `make images` / `.ci/run`).

A missing engine or image FAILS these tests with the command that fixes it: CI always has
both, and a skipped container test would hide exactly what it exists to prove.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from tiergate.errors import PipelineError
from tiergate.pipelines.docker_runner import IMAGE_UID, LocalImages, docker_client

IMAGES = LocalImages()
ALL_IMAGES = {"cpu": IMAGES.cpu, "gpu": IMAGES.gpu, "triton": IMAGES.triton}
# How a restricted pod runs a step: non-root, read-only root filesystem, a writable /tmp, no network.
RESTRICTED = ("--read-only", "--tmpfs", "/tmp:rw,exec", "--network", "none", "--workdir", "/")


def require_engine_and_images(*images: str) -> None:
    """Fail (never skip) unless the engine answers and every image exists."""
    try:
        client = docker_client()
    except PipelineError as error:
        pytest.fail(str(error))
    present = {tag for image in client.images.list() for tag in image.tags}
    client.close()
    missing = [image for image in images if image not in present]
    if missing:
        pytest.fail(f"images {missing} are missing; build them first: make images (CI: .ci/run builds them)")


def docker_run(image: str, command: Sequence[str], *options: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`docker run --rm` with the restricted options; returns the finished process (stdout+stderr text)."""
    return subprocess.run(
        ["docker", "run", "--rm", *RESTRICTED, *options, image, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


__all__ = ["ALL_IMAGES", "IMAGES", "IMAGE_UID", "RESTRICTED", "docker_run", "require_engine_and_images"]
