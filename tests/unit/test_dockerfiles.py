"""The Dockerfiles' contract, read statically (the built images are tested in tests/integration/test_images.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tiergate.paths import PROJECT_ROOT

DOCKERFILES = {
    "cpu": PROJECT_ROOT / "components" / "images" / "Dockerfile.cpu",
    "gpu": PROJECT_ROOT / "components" / "images" / "Dockerfile.gpu",
    "triton": PROJECT_ROOT / "serving" / "images" / "Dockerfile.triton",
}
PUBLIC_BASES = {
    "cpu": "python:3.11-slim-bookworm",
    "gpu": "python:3.11-slim-bookworm",
    "triton": "nvcr.io/nvidia/tritonserver:25.01-py3",
}


def instructions(name: str) -> list[dict]:  # type: ignore[type-arg]
    with DOCKERFILES[name].open("rb") as handle:
        structure = DockerfileParser(fileobj=handle).structure
    return [item for item in structure if item["instruction"] != "COMMENT"]


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_base_image_is_a_build_argument_defaulting_to_the_public_image(name: str) -> None:
    first = instructions(name)[0]
    assert first["instruction"] == "ARG" and first["value"] == f"BASE_IMAGE={PUBLIC_BASES[name]}"
    froms = [item["value"] for item in instructions(name) if item["instruction"] == "FROM"]
    assert froms and all(value.startswith("${BASE_IMAGE}") for value in froms)


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_final_stage_runs_as_a_numeric_non_root_user_with_writable_paths_in_tmp(name: str) -> None:
    structure = instructions(name)
    last_from = max(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    final = structure[last_from:]
    users = [item["value"] for item in final if item["instruction"] == "USER"]
    assert users and users[-1] == "${UID}:${UID}"
    assert any(item["instruction"] == "ARG" and item["value"] == "UID=1000" for item in final)
    env = " ".join(item["value"] for item in final if item["instruction"] == "ENV")
    for variable in ("HOME=/tmp", "TMPDIR=/tmp", "XDG_CACHE_HOME=/tmp/.cache", "HF_HUB_OFFLINE=1"):
        assert variable in env, (name, variable)
    # The project comes from its wheel, never from a source tree.
    runs = " ".join(item["value"] for item in final if item["instruction"] == "RUN")
    assert "/tmp/wheels/tiergate-*.whl" in runs and "--no-deps" in runs
    assert not any(item["instruction"] == "COPY" and item["value"].split()[0] in {".", "tiergate", "config"} for item in final)


# What scripts/image_context.py puts in the build context; a COPY of anything else fails the build.
CONTEXT_ENTRIES = {"torch/", "wheels/", "requirements/cpu.txt", "requirements/gpu.txt", "requirements/serving.txt"}


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_copies_name_only_what_the_build_context_holds(name: str) -> None:
    copies = [item["value"].split() for item in instructions(name) if item["instruction"] == "COPY"]
    assert copies
    for parts in copies:
        if any(part.startswith("--from") for part in parts):
            continue
        assert set(parts[:-1]) <= CONTEXT_ENTRIES, (name, parts)
    if name != "triton":
        runs = " ".join(item["value"] for item in instructions(name) if item["instruction"] == "RUN")
        assert 'torch==${TORCH_VERSION}' in runs and any(
            item["value"] == "TORCH_VERSION=2.13.0" for item in instructions(name) if item["instruction"] == "ARG"
        )


def test_gpu_weights_are_baked_at_build_time() -> None:
    text = DOCKERFILES["gpu"].read_text()
    assert 'ARG BASE_MODELS="sentence-transformers/all-mpnet-base-v2"' in text and "snapshot_download" in text
    assert "HF_HUB_CACHE=/opt/hf-cache" in text


def load_context_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("image_context", PROJECT_ROOT / "scripts" / "image_context.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["image_context"] = module
    spec.loader.exec_module(module)
    return module


def test_image_requirements_come_from_the_pyproject_pins() -> None:
    sets = load_context_script().requirement_sets()
    assert not any(pin.startswith("torch") for pins in sets.values() for pin in pins)  # torch: its own stage
    assert any(pin.startswith("onnxruntime==") for pin in sets["cpu"])
    assert any(pin.startswith("onnxruntime-gpu==") for pin in sets["gpu"])
    assert not any(pin.startswith("onnxruntime==") for pin in sets["gpu"])
    assert all("==" in pin for pin in sets["serving"]) and not any(pin.startswith(("kfp", "kserve")) for pin in sets["serving"])


def test_the_wheel_for_the_images_is_built_from_a_copy_without_stale_build_output(tmp_path: Path) -> None:
    script = load_context_script()
    ignored = script.NOT_SOURCES(str(PROJECT_ROOT), ["build", ".venv", "runs", "tiergate", "x.egg-info", "tests"])
    assert {"build", ".venv", "runs", "x.egg-info", "tests"} <= set(ignored) and "tiergate" not in ignored
