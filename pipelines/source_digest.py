"""A digest of the code and config a tiergate installation runs, the same for a checkout and a wheel.

Why: a pipeline run with `--runner docker` compiles each task's wrapper from *this* checkout
while the task imports the library *baked into its image*. When the two differ (code edited
after `make images`), tasks fail in confusing ways (an unexpected keyword argument, a missing
module). The images carry this digest as a label (`scripts/build-images.sh`), and the docker
runner refuses images built from other sources, naming the fix.

Only what the wheel ships and the tasks read is hashed (Python sources, YAML, templates), with
package-relative names, so an editable checkout and an installed wheel of the same sources agree.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

ROOTS = ("tiergate", "tiergate.cli", "tiergate.components", "tiergate.config", "tiergate.pipelines", "tiergate.serving")
SUFFIXES = (".py", ".yaml", ".yml", ".j2")
SKIPPED = ("compiled",)  # tiergate.pipelines' compiled YAML: for the dashboard, never read by a task
LABEL = "org.tiergate.source-digest"


def _files(package: str) -> dict[str, Path]:
    folder = Path(str(importlib.resources.files(package)))
    others = {Path(str(importlib.resources.files(root))).resolve() for root in ROOTS if root != package}
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or path.suffix not in SUFFIXES or "__pycache__" in relative.parts:
            continue
        if relative.parts[0] in SKIPPED and package == "tiergate.pipelines":
            continue
        if any(parent.resolve() in others for parent in path.parents if folder in parent.parents or parent == folder):
            continue  # in a wheel, tiergate/cli/... belongs to tiergate.cli, not to tiergate
        found[f"{package}:{relative.as_posix()}"] = path
    return found


def source_digest() -> str:
    """sha256 over (name, bytes) of every shipped source and config file, in name order."""
    digest = hashlib.sha256()
    files: dict[str, Path] = {}
    for package in ROOTS:
        files.update(_files(package))
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    return digest.hexdigest()


if __name__ == "__main__":
    print(source_digest())
