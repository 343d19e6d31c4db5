"""Where tiergate finds its config, and what relative paths in a profile are relative to.

The repository's `config/` folder ships inside the wheel as the package `tiergate.config`
(pyproject `package-dir`), so an installed tiergate — a container image, a user's venv —
needs no checkout: the taxonomy, profiles, regression vectors and generator vocabulary are
found through the import system, never from `__file__`. `$TIERGATE_HOME`, when set, names a
folder holding a `config/` of the same shape that replaces the packaged one (an image or a
cluster that mounts a reviewed config of its own).

`PROJECT_ROOT` is only for what really is a working-tree location: run outputs such as the
local profile's simulated PVC (`runs/pvc`) and local GitOps repository (`runs/gitops.git`).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from tiergate.errors import ConfigError

HOME_VARIABLE = "TIERGATE_HOME"


def _project_root() -> Path:
    """$TIERGATE_HOME; else the source checkout this module lives in; else (an installed wheel) the working directory.

    Never site-packages: an installed tiergate that ran the local profile would otherwise write
    `runs/pvc` inside the virtualenv.
    """
    home = os.environ.get(HOME_VARIABLE)
    if home:
        return Path(home)
    checkout = Path(__file__).resolve().parent.parent
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


PROJECT_ROOT = _project_root()


def config_dir() -> Path:
    """The config tree in use: `$TIERGATE_HOME/config` if the variable is set, else the packaged one.

    Read at call time (not import time) so a process that sets the variable late — a test, a
    KFP launcher — still gets what it asked for.
    """
    home = os.environ.get(HOME_VARIABLE)
    if home:
        folder = Path(home) / "config"
        if not folder.is_dir():
            raise ConfigError(f"${HOME_VARIABLE} is {home}, but {folder} is not a folder (unset it to use the packaged config)")
        return folder
    return Path(str(importlib.resources.files("tiergate.config")))


def config_path(*parts: str) -> Path:
    """A file or folder inside the config tree, e.g. config_path("profiles", "local.yaml")."""
    return config_dir().joinpath(*parts)


def project_path(path: str | Path) -> Path:
    """Resolve a path named in a profile or on the command line.

    Absolute paths stay. `config/...` means the config tree in use (packaged or
    `$TIERGATE_HOME`), because profiles name e.g. `regression_dir: config/regression` and that
    must work in an installed package. Any other relative path is relative to the project root.
    """
    path = Path(path)
    if path.is_absolute():
        return path
    if path.parts[:1] == ("config",):
        return config_path(*path.parts[1:])
    return PROJECT_ROOT / path
