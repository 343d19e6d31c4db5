"""Publish a verified Triton model repository to the object store: staged, verified, then marked.

Target: <store>/<model>/<version>/<digest>, digest = sha256 of the repository manifest's file
list. The procedure, so that a failure never leaves a half version:

1. the local repository is verified (`tiergate.trust.verify_repository`: files, gate, judged bytes);
2. it is uploaded to a staging prefix `<model>/<version>/.staging-…`, and the staged copy is verified;
3. the staging prefix is moved to `<digest>/`, verified again, and only then is the single
   marker `<model>/<version>/published.json` written: the version is published from that moment.

A version is never overwritten: republishing the same content re-verifies the stored copy (a
corrupted store is refused, never reported as "already published"), different content under a
published version is refused. Any failure removes the staging prefix and leaves the store as it was.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tiergate.artifacts import PUBLISHED_MARKER, REPOSITORY_MANIFEST
from tiergate.errors import PromotionRefused, PublishError
from tiergate.gate import GatePolicy
from tiergate.outputs import exclusive_lock
from tiergate.profiles import PublishSettings
from tiergate.store import StoredVersion, read_marker, resolve_store, uri_of
from tiergate.trust import DIGEST_PATTERN, VerifiedRepository, is_local, verify_local_repository, verify_repository

log = logging.getLogger(__name__)
LOCK_FILE = ".publish.lock"


def publish_repository(repository: Path, settings: PublishSettings, policy: GatePolicy | None = None) -> dict[str, Any]:
    """Upload `repository` and verify it; returns {uri, digest, version, model_name, already_published}."""
    repository = Path(repository)
    local = verify_local_repository(repository, policy=policy)
    stored = StoredVersion(local.manifest.model_name, local.manifest.model_version, local.manifest.digest)
    filesystem, root = resolve_store(settings)
    uri = uri_of(settings, stored)
    result = {
        "uri": uri,
        "digest": stored.digest,
        "version": stored.version,
        "model_name": stored.model_name,
        "already_published": False,
    }
    version_root = f"{root}/{stored.version_relative}"
    target = f"{root}/{stored.relative}"
    with version_lock(filesystem, version_root, stored.version):
        marker = read_marker(filesystem, version_root)
        if marker is not None:
            if marker["digest"] != stored.digest:
                raise PublishError(
                    f"version {stored.version} is already published with digest {marker['digest'][:12]}; "
                    "published versions are never overwritten: choose a new version"
                )
            reverify(filesystem, target, stored, policy, uri)
            log.info("publish: %s already published with the same digest, and its stored copy verifies", uri)
            return {**result, "already_published": True}
        remove_leftovers(filesystem, version_root)
        upload_and_mark(filesystem, repository, local, version_root, target, stored, policy, uri)
    return result


@contextmanager
def version_lock(filesystem: Any, version_root: str, version: str) -> Iterator[None]:
    """On a local store (a PVC), one publisher per version at a time; object stores have no lock (README)."""
    if not is_local(filesystem):
        yield
        return
    try:
        Path(version_root).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PublishError(f"cannot write to the store at {version_root}: {error.strerror or error}") from None
    busy = PublishError(f"version {version} is being published by another process right now; try again")
    with exclusive_lock(Path(version_root) / LOCK_FILE, busy, PublishError):
        yield


def remove_leftovers(filesystem: Any, version_root: str) -> None:
    """Staging prefixes and unmarked uploads of earlier, crashed attempts (only ever called under the lock)."""
    if not filesystem.exists(version_root):
        return
    for path in filesystem.ls(version_root, detail=False):
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(".staging-") or DIGEST_PATTERN.fullmatch(name):
            log.warning("publish: removing an unpublished earlier upload at %s", path)
            remove_quietly(filesystem, str(path))


def reverify(filesystem: Any, target: str, stored: StoredVersion, policy: GatePolicy | None, uri: str) -> None:
    try:
        verify_repository(filesystem, target, stored.digest, policy, where=uri)
    except PromotionRefused as error:
        raise PublishError(f"the published copy of {stored.version} no longer verifies ({error}); refusing") from None


def upload_and_mark(
    filesystem: Any,
    repository: Path,
    local: VerifiedRepository,
    version_root: str,
    target: str,
    stored: StoredVersion,
    policy: GatePolicy | None,
    uri: str,
) -> None:
    """Stage, verify, move into place, verify, mark; on any failure remove what this attempt wrote."""
    staging = f"{version_root}/.staging-{stored.digest[:12]}-{uuid.uuid4().hex[:8]}"
    try:
        upload(filesystem, repository, sorted(local.manifest.files), staging)
        verify_repository(filesystem, staging, stored.digest, policy, where=f"{uri} (staged)")
        move_tree(filesystem, staging, target)
        verify_repository(filesystem, target, stored.digest, policy, where=uri)
        write_marker(filesystem, version_root, stored, uri)
    except (OSError, PromotionRefused, PublishError) as error:
        remove_quietly(filesystem, staging)
        if read_marker(filesystem, version_root) is None:
            remove_quietly(filesystem, target)
        if isinstance(error, PublishError):
            raise
        raise PublishError(f"publishing {uri} failed, nothing was published: {error}") from None
    log.info("publish: %s verified (%d files) and marked published", uri, len(local.manifest.files))


def upload(filesystem: Any, repository: Path, files: list[str], destination: str) -> None:
    for index, name in enumerate(files, start=1):
        filesystem.makedirs(f"{destination}/{Path(name).parent}", exist_ok=True)
        filesystem.put_file(str(repository / name), f"{destination}/{name}")
        log.info("publish: %d/%d %s", index, len(files), name)
    filesystem.put_file(str(repository / REPOSITORY_MANIFEST), f"{destination}/{REPOSITORY_MANIFEST}")


def move_tree(filesystem: Any, source: str, destination: str) -> None:
    """A rename on a local store; on an object store, a server-side copy of each object, then the staging delete."""
    if is_local(filesystem):
        Path(source).rename(destination)
        return
    prefix = source.rstrip("/") + "/"
    for path in filesystem.find(source):
        filesystem.copy(path, destination.rstrip("/") + "/" + path[len(prefix) :])
    filesystem.rm(source, recursive=True)


def write_marker(filesystem: Any, version_root: str, stored: StoredVersion, uri: str) -> None:
    """The single object that makes the version published; created exclusively where the store allows it."""
    marker = {
        "digest": stored.digest,
        "model_name": stored.model_name,
        "version": stored.version,
        "uri": uri,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    data = (json.dumps(marker, indent=2, sort_keys=True) + "\n").encode("utf-8")
    path = f"{version_root}/{PUBLISHED_MARKER}"
    if is_local(filesystem):
        try:
            with open(path, "xb") as handle:  # two publishers of one version: exactly one wins
                handle.write(data)
        except FileExistsError:
            raise PublishError(
                f"version {stored.version} was published by someone else meanwhile; choose a new version"
            ) from None
    else:
        filesystem.pipe_file(path, data)


def remove_quietly(filesystem: Any, path: str) -> None:
    try:
        if filesystem.exists(path):
            filesystem.rm(path, recursive=True)
    except OSError as error:  # the original failure is what the user needs to see
        log.warning("publish: could not remove %s: %s", path, error)
