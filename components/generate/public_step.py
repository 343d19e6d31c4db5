"""The public-data step: a run's public-data location → the imported training sets merge reads.

The location is a local folder, `pvc://CLAIM/path` (read through the store's mount, as publish
reads its store) or an object-store URL (`s3://`, `gs://`), copied locally first. Evaluate reads
the evaluation-only sets (XSTest, SimpleSafetyTests) from the same location with the same
resolver; they are never imported for training. An empty location is allowed and visible: the
output is an empty dataset whose manifest says why, so merge trains on generated data only, and
the evaluation report says its out-of-distribution checks did not run.

The run form's other location input, `feedback_data` (components/merge/feedback_input.py), is
checked and resolved by the same functions (`what` names the input in their messages).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tiergate.components.generate.importers import import_public
from tiergate.dataset_adapters import load_adapters
from tiergate.datasets import DatasetManifest, file_entry, write_manifest
from tiergate.errors import InputDataError
from tiergate.outputs import atomic_output
from tiergate.paths import project_path
from tiergate.profiles import Profile, PublishSettings
from tiergate.records import write_jsonl
from tiergate.store import locate
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)
NO_LOCATION_NOTE = "no public-data location given: nothing imported"
NO_TRAINING_SETS_NOTE = (
    "the profile imports no public training set (public_data.datasets: []); evaluate still reads the evaluation-only sets"
)
REMOTE_SCHEMES = ("s3://", "gs://", "gcs://")
MAX_LOCATION_CHARS = 1024
PUBLIC_DATA = "public-data"  # the run-form input a location belongs to, as messages name it


def check_location(location: str, what: str = PUBLIC_DATA) -> str:
    """A location from the run form: a folder path, pvc://, s3:// or gs://; anything else is one clear line.

    A `pvc://`, `s3://` or `gs://` location names its path segments plainly: an empty, `.` or `..`
    segment anywhere is refused, so a location can never climb out of the claim or bucket it names.
    `what` names the run-form input in the messages (`public-data`, `feedback-data`): every location
    input of the run form is checked here, by the same rules."""
    location = location.strip()
    if len(location) > MAX_LOCATION_CHARS or any(ord(char) < 32 for char in location):
        raise InputDataError(f"{what} location must be one line of at most {MAX_LOCATION_CHARS} characters")
    scheme = location.split("://", 1)[0] + "://" if "://" in location else ""
    if scheme and scheme not in (*REMOTE_SCHEMES, "pvc://", "file://"):
        raise InputDataError(f"{what} location {location[:80]!r}: use a folder, pvc://, s3:// or gs://, not {scheme}")
    if scheme in ("pvc://", *REMOTE_SCHEMES):
        segments = location[len(scheme) :].rstrip("/").split("/")
        if any(part in ("", ".", "..") for part in segments):
            raise InputDataError(
                f"{what} location {location[:80]!r}: name a {scheme}NAME/path with no empty, '.' or '..' segments"
            )
    return location


def _remote_failure(location: str, error: Exception, what: str) -> InputDataError:
    """An object store that cannot be reached or read, in one line (never the client library's traceback)."""
    detail = " ".join(str(error).split())[:200] or type(error).__name__
    return InputDataError(f"{what} location {location}: cannot read it ({type(error).__name__}: {detail})")


@contextmanager
def local_folder(
    location: str, settings: PublishSettings, evaluation_only: bool = False, what: str = PUBLIC_DATA
) -> Iterator[Path | None]:
    """The location as a local folder for the duration (None for an empty location): remote sets are
    copied into a temporary one (only the evaluation-only sets' folders when `evaluation_only`)."""
    location = check_location(location, what)
    if not location:
        yield None
        return
    if location.startswith(REMOTE_SCHEMES):
        with tempfile.TemporaryDirectory(prefix="tiergate-public-") as scratch:
            copy_remote(location, settings, Path(scratch), evaluation_only, what)
            yield Path(scratch)
        return
    if location.startswith("pvc://"):
        root = project_path(settings.pvc_mount_root).resolve()
        _, path = locate(location, settings)
        if not Path(path).resolve().is_relative_to(root):
            raise InputDataError(f"{what} location {location}: resolves outside the PVC mount {root}")
        yield Path(path)
        return
    if location.startswith("file://"):
        yield Path(location.removeprefix("file://"))
        return
    yield Path(location).expanduser()


def copy_remote(location: str, settings: PublishSettings, scratch: Path, evaluation_only: bool, what: str = PUBLIC_DATA) -> None:
    """Copy an object-store folder (or only its evaluation-only sets) into `scratch`; failures are one line."""
    wanted = [adapter.name for adapter in load_adapters(role="evaluation")] if evaluation_only else [""]
    log.info("%s: copying %s", what, location)
    try:
        filesystem, path = locate(location, settings)
        if not filesystem.isdir(path):
            raise InputDataError(f"{what} location {location}: not a folder in the object store")
        for name in wanted:
            remote = f"{path.rstrip('/')}/{name}".rstrip("/")
            if filesystem.isdir(remote):
                filesystem.get(remote + "/", str(scratch / name), recursive=True)
    except InputDataError:
        raise
    except Exception as error:  # fsspec back ends raise their own types: missing client, credentials, network
        raise _remote_failure(location, error, what) from None


def empty_dataset(taxonomy: Taxonomy, out_dir: Path, note: str, dataset: str = "imported") -> DatasetManifest:
    """A dataset with no records whose manifest says why (a run without public data or feedback)."""
    records = out_dir / "records.jsonl"
    write_jsonl(records, [])
    manifest = DatasetManifest(
        dataset=dataset,
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.labels_sha256,
        files={"records.jsonl": file_entry(records, 0)},
        counts={"records": 0},
        notes=[note],
    )
    write_manifest(out_dir, manifest)
    return manifest


def import_public_location(
    taxonomy: Taxonomy, profile: Profile, location: str, out_dir: Path, overwrite: bool = False
) -> DatasetManifest:
    """Import the training sets found at `location` into `out_dir` (an empty dataset for no location)."""
    settings = profile.public_data
    with atomic_output(Path(out_dir), overwrite) as staging, local_folder(location, profile.publish) as folder:
        if folder is None:
            log.info("public data: %s", NO_LOCATION_NOTE)
            return empty_dataset(taxonomy, staging, NO_LOCATION_NOTE)
        if settings.datasets == []:
            log.info("public data: %s", NO_TRAINING_SETS_NOTE)
            return empty_dataset(taxonomy, staging, NO_TRAINING_SETS_NOTE)
        if not folder.is_dir():
            raise InputDataError(f"public-data location not found or not a folder: {location}")
        manifest = import_public(taxonomy, folder, staging, settings.datasets, "train", settings.max_bad_fraction)
    log.info("public data: %d training records", manifest.counts["records"])
    return manifest
