"""The model store's layout and its published versions: what a storageUri points to, and whether it holds.

Layout: `<store>/<model>/<version>/<digest>/…` holds a repository's files; the version is
published only once `<store>/<model>/<version>/published.json` names that digest (the single
final marker, written after every file was verified). Publishing writes it
(`tiergate.components.publish`); promotion, rollback and loading read it through
`verify_published`, which re-verifies the bytes every time.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from tiergate.artifacts import PUBLISHED_MARKER, REPOSITORY_MANIFEST
from tiergate.errors import PromotionRefused, TiergateError
from tiergate.gate import GatePolicy
from tiergate.paths import project_path
from tiergate.profiles import PublishSettings
from tiergate.trust import (
    VerifiedRepository,
    check_digest,
    check_name,
    parse_manifest,
    read_bytes,
    verify_local_repository,
    verify_repository,
)


@dataclass(frozen=True)
class StoredVersion:
    """One content-addressed version: `<model>/<version>/<digest>` below the store root."""

    model_name: str
    version: str
    digest: str

    def __post_init__(self) -> None:
        check_name("model name", self.model_name)
        check_name("model version", self.version)
        check_digest(self.digest)

    @property
    def relative(self) -> str:
        return f"{self.model_name}/{self.version}/{self.digest}"

    @property
    def version_relative(self) -> str:
        return f"{self.model_name}/{self.version}"


def resolve_store(settings: PublishSettings) -> tuple[Any, str]:
    """(filesystem, root path) for the store; pvc://CLAIM/prefix maps to <pvc_mount_root>/CLAIM/prefix."""
    return locate(settings.store, settings)


def locate(uri: str, settings: PublishSettings) -> tuple[Any, str]:
    """(filesystem, path) of any URI in the store's scheme; `pvc://` is read through the local mount."""
    uri = uri.rstrip("/")
    if uri.startswith("pvc://"):
        return fsspec.filesystem("file"), str(project_path(settings.pvc_mount_root) / uri.removeprefix("pvc://"))
    filesystem, path = fsspec.core.url_to_fs(uri, **settings.storage_options)
    return filesystem, str(path).rstrip("/")


def uri_of(settings: PublishSettings, version: StoredVersion) -> str:
    return f"{settings.store.rstrip('/')}/{version.relative}"


def parse_uri(uri: str) -> StoredVersion:
    """The model, version and digest a content-addressed storageUri ends with; refused if it is not one."""
    parts = uri.rstrip("/").rsplit("/", 3)
    if len(parts) != 4:
        raise PromotionRefused(f"{uri!r} is not a <store>/<model>/<version>/<digest> URI")
    return StoredVersion(parts[1], parts[2], parts[3])


def read_marker(filesystem: Any, version_root: str) -> dict[str, Any] | None:
    """The version's `published.json`, or None when the version was never (completely) published."""
    path = f"{version_root}/{PUBLISHED_MARKER}"
    if not filesystem.exists(path):
        return None
    try:
        with filesystem.open(path, "rb") as handle:
            marker = json.loads(handle.read())
        check_digest(marker["digest"])
    except (ValueError, KeyError, TypeError, OSError, RecursionError):
        raise PromotionRefused(f"{path} is not a valid publication marker") from None
    return dict(marker)


def require_in_store(uri: str, settings: PublishSettings) -> None:
    """A URI this deployment trusts lies under the profile's store (a hand-made commit could point anywhere)."""
    store = settings.store.rstrip("/") + "/"
    escapes = any(part in ("", ".", "..") for part in uri[len(store) :].split("/"))  # `<store>/../elsewhere`
    if not uri.startswith(store) or escapes:
        raise PromotionRefused(f"{uri} is not in the configured model store {settings.store}")


def verify_published(uri: str, settings: PublishSettings, policy: GatePolicy | None = None) -> VerifiedRepository:
    """Refuse unless `uri` is a published version in the configured store whose stored bytes still verify."""
    require_in_store(uri, settings)
    stored = parse_uri(uri)
    filesystem, path = locate(uri, settings)
    version_root = path.rsplit("/", 1)[0]
    marker = read_marker(filesystem, version_root)
    if marker is None:
        raise PromotionRefused(f"{uri}: version {stored.version} is not published in the store (no {PUBLISHED_MARKER})")
    if marker["digest"] != stored.digest:
        raise PromotionRefused(f"{uri}: version {stored.version} is published with digest {marker['digest'][:12]}, not this one")
    verified = verify_repository(filesystem, path, stored.digest, policy, where=uri)
    if (verified.manifest.model_name, verified.manifest.model_version) != (stored.model_name, stored.version):
        raise PromotionRefused(f"{uri}: the stored manifest is {verified.manifest.model_name} {verified.manifest.model_version}")
    return verified


def fetch_repository(
    uri: str, destination: Path, settings: PublishSettings, expected_digest: str | None = None
) -> VerifiedRepository:
    """Download a published version into `destination` and verify it before anything can load it.

    This is the load-side check, compatible with KServe's storage initializer contract
    (`<command> <storageUri> <dest>`): the version must be published (its marker names this digest),
    `destination` must be empty (it may be a mount point, so it is never renamed), the files land in
    a staging folder inside it, are verified against the manifest, the gate and the expected digest
    (by default the URI's own, content-addressed last segment), and only then are moved into place.
    Any failure leaves `destination` as it was and raises.
    """
    destination = Path(destination)
    stored = parse_uri(uri)
    expected_digest = expected_digest or stored.digest
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise PromotionRefused(f"{destination} must be an empty folder: anything already there would be served unverified")
    filesystem, path = locate(uri, settings)
    marker = read_marker(filesystem, path.rsplit("/", 1)[0])
    if marker is None or marker["digest"] != stored.digest:
        raise PromotionRefused(f"{uri}: version {stored.version} is not published with this digest (see its {PUBLISHED_MARKER})")
    staging = destination / f".tiergate-staging-{uuid.uuid4().hex[:8]}"
    moved: list[Path] = []
    try:
        manifest = parse_manifest(read_bytes(filesystem, f"{path}/{REPOSITORY_MANIFEST}", uri), uri)
        staging.mkdir(parents=True)
        for name in [*manifest.files, REPOSITORY_MANIFEST]:
            local = staging / name
            local.parent.mkdir(parents=True, exist_ok=True)
            filesystem.get_file(f"{path}/{name}", str(local))
        verified = verify_repository(fsspec.filesystem("file"), str(staging), expected_digest, where=uri)
        for entry in sorted(staging.iterdir()):
            entry.rename(destination / entry.name)
            moved.append(destination / entry.name)
        return verified
    except OSError as error:
        for entry in moved:  # a half-moved repository must not be left for Triton to load
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        raise PromotionRefused(f"{uri}: download failed: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def previous_repository(location: str, settings: PublishSettings) -> Iterator[Path | None]:
    """The previously promoted model as a local, verified repository folder, or None for an empty location.

    `location` is a published storageUri (fetched into a temporary folder and verified like any load)
    or a local repository folder (verified in place: its manifest, files and gate must still agree).
    The previous model screens new training data and is the yardstick a new model must not fall below.
    """
    location = location.strip()
    if not location:
        yield None
        return
    if "://" not in location and Path(location).is_dir():
        verify_local_repository(Path(location), where=location)
        yield Path(location)
        return
    with tempfile.TemporaryDirectory(prefix="tiergate-previous-") as scratch:
        try:
            fetch_repository(location, Path(scratch) / "repository", settings)
        except TiergateError:
            raise
        except Exception as error:  # an object store's client: missing package, credentials, network
            detail = " ".join(str(error).split())[:200] or type(error).__name__
            raise PromotionRefused(f"previous model {location}: cannot fetch it ({type(error).__name__}: {detail})") from None
        yield Path(scratch) / "repository"
