"""Where the project's config lives: the repo root, or $TIERGATE_HOME in a container image."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("TIERGATE_HOME", Path(__file__).resolve().parent.parent))


def project_path(path: str | Path) -> Path:
    """Absolute paths stay; relative ones are relative to the project root (not the working directory)."""
    path = Path(path)
    return path if path.is_absolute() else PROJECT_ROOT / path
