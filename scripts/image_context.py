"""Prepare the Docker build context for the tiergate images (build/images/context).

Why a context of its own instead of the repository: the images install the project from its
wheel (config inside the package), never from a source tree, and the context stays small (no
.venv, no runs/). Requirements are derived from pyproject.toml's pins so versions have one
source; each image installs them in a layer before the wheel, so a code change rebuilds only
the last layer.

Usage: python scripts/image_context.py OUT [--torch-wheel PATH]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from tiergate.pipelines.source_digest import source_digest  # the venv's (editable) tiergate: this checkout

ROOT = Path(__file__).resolve().parent.parent
# What the Triton python-backend models, the gateway and the CLI's light commands import; no torch, no kfp.
# confusable-homoglyphs: the model-input normalisation (tiergate.normalization); aiohttp: `tiergate gateway`.
SERVING = (
    "transformers",
    "tokenizers",
    "numpy",
    "onnxruntime",
    "onnx",
    "pydantic",
    "PyYAML",
    "typer",
    "rich",
    "httpx",
    "aiohttp",
    "confusable-homoglyphs",
)


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def requirement_sets() -> dict[str, list[str]]:
    """cpu: every pin but torch; gpu: the same with onnxruntime-gpu; serving: the light subset."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = [pin for pin in project["dependencies"] if _name(pin) != "torch"]
    gpu_extra = project["optional-dependencies"]["gpu"]
    replaced = {_name(pin).removesuffix("-gpu") for pin in gpu_extra}
    by_name = {_name(pin): pin for pin in pins}
    missing = [name for name in SERVING if name.lower() not in by_name]
    if missing:
        sys.exit(f"error: serving requirements {missing} are not pinned in pyproject.toml")
    return {
        "cpu": pins,
        "gpu": [pin for pin in pins if _name(pin) not in replaced] + list(gpu_extra),
        "serving": [by_name[name.lower()] for name in SERVING],
    }


NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", ".*_cache", "tests")


def build_wheel(out: Path) -> Path:
    """`pip wheel --no-deps`: the project alone, config included (package `tiergate.config`).

    Built from a copy of the tree: setuptools reuses ./build/lib, and a file deleted from the
    tree since the last build would otherwise still ship (seen: a renamed pipeline module).
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "src"
        shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        command += ["--wheel-dir", str(out), str(source)]
        result = subprocess.run(command, capture_output=True, text=True)  # setuptools' page-long warnings: only on failure
    if result.returncode != 0:
        sys.exit(f"error: pip wheel failed:\n{result.stdout}{result.stderr}")
    wheels = sorted(out.glob("tiergate-*.whl"))
    if len(wheels) != 1:
        sys.exit(f"error: expected one tiergate wheel in {out}, found {wheels}")
    return wheels[0]


def place_torch(folder: Path, wheel: Path | None) -> None:
    """A hard link (or copy) of the local CPU torch wheel; an empty folder means: use an index."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):
        if wheel is None or old.name != wheel.name:
            old.unlink()
    if wheel is None or (folder / wheel.name).exists():
        return
    try:
        (folder / wheel.name).hardlink_to(wheel)
    except OSError:
        shutil.copy2(wheel, folder / wheel.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--torch-wheel", type=Path, default=None, help="local CPU torch wheel for the CPU image")
    args = parser.parse_args()
    out: Path = args.out
    requirements = out / "requirements"
    requirements.mkdir(parents=True, exist_ok=True)
    for name, pins in requirement_sets().items():
        target = requirements / f"{name}.txt"
        text = "\n".join(pins) + "\n"
        if not target.is_file() or target.read_text() != text:  # unchanged bytes keep Docker's layer cache
            target.write_text(text)
    wheel = build_wheel(out / "wheels")
    place_torch(out / "torch", args.torch_wheel)
    (out / "source-digest").write_text(source_digest() + "\n")  # the images' label; the docker runner checks it
    print(f"context {out}: {wheel.name}, torch wheel: {args.torch_wheel.name if args.torch_wheel else 'from an index'}")


if __name__ == "__main__":
    main()
