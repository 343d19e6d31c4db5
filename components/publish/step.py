"""Publish a Triton model repository to the object store, content-addressed and verified.

Target: <store>/<model>/<version>/<digest>, digest = sha256 of the repository manifest's file
list. A version is never overwritten: republishing the same content is a no-op, different
content under a published version is refused. `repository.json` is uploaded last, so a
crashed upload is recognisable (no manifest) and is redone from scratch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import fsspec

from tiergate.artifacts import REPOSITORY_MANIFEST
from tiergate.errors import PublishError
from tiergate.hashing import sha256_stream
from tiergate.paths import project_path
from tiergate.profiles import PublishSettings

log = logging.getLogger(__name__)



def resolve_store(settings: PublishSettings) -> tuple[Any, str]:
    """(filesystem, root path) for the store; pvc://CLAIM/prefix maps to <pvc_mount_root>/CLAIM/prefix."""
    store = settings.store.rstrip("/")
    if store.startswith("pvc://"):
        local = project_path(settings.pvc_mount_root) / store.removeprefix("pvc://")
        return fsspec.filesystem("file"), str(local)
    filesystem, root = fsspec.core.url_to_fs(store, **settings.storage_options)
    return filesystem, str(root).rstrip("/")


def _sha256_remote(filesystem: Any, path: str) -> str:
    with filesystem.open(path, "rb") as handle:
        return sha256_stream(handle)


def publish_repository(repository: Path, settings: PublishSettings) -> dict[str, Any]:
    """Upload `repository` and verify every file; returns {uri, digest, version, model_name, already_published}."""
    repository = Path(repository)
    manifest = json.loads((repository / REPOSITORY_MANIFEST).read_text(encoding="utf-8"))
    digest, version, model_name = manifest["digest"], manifest["model_version"], manifest["model_name"]
    filesystem, root = resolve_store(settings)
    relative = f"{model_name}/{version}/{digest}"
    target = f"{root}/{relative}"
    uri = f"{settings.store.rstrip('/')}/{relative}"
    result = {"uri": uri, "digest": digest, "version": version, "model_name": model_name, "already_published": False}

    version_dir = f"{root}/{model_name}/{version}"
    if filesystem.exists(version_dir):
        for existing in filesystem.ls(version_dir, detail=False):
            existing = existing.rstrip("/")
            if existing.endswith(digest) and filesystem.exists(f"{existing}/{REPOSITORY_MANIFEST}"):
                log.info("publish: %s already published with the same digest; nothing to do", uri)
                return {**result, "already_published": True}
            if filesystem.exists(f"{existing}/{REPOSITORY_MANIFEST}"):
                raise PublishError(
                    f"version {version} is already published with digest {existing.rsplit('/', 1)[-1][:12]}; "
                    "published versions are never overwritten: choose a new version"
                )
    if filesystem.exists(target):
        log.warning("publish: removing an incomplete earlier upload at %s", target)
        filesystem.rm(target, recursive=True)

    files = sorted(manifest["files"])
    for index, name in enumerate(files, start=1):
        filesystem.makedirs(f"{target}/{Path(name).parent}", exist_ok=True)
        filesystem.put_file(str(repository / name), f"{target}/{name}")
        log.info("publish: %d/%d %s", index, len(files), name)
    filesystem.put_file(str(repository / REPOSITORY_MANIFEST), f"{target}/{REPOSITORY_MANIFEST}")

    for name, expected in manifest["files"].items():
        actual = _sha256_remote(filesystem, f"{target}/{name}")
        if actual != expected:
            raise PublishError(f"verification failed for {uri}/{name}: sha256 {actual[:12]} != {expected[:12]}")
    log.info("publish: %s verified (%d files)", uri, len(files))
    return result
