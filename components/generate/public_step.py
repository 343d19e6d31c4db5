"""The public-data step: a run's public-data location → an imported training dataset and the
evaluation-only sets (XSTest, SimpleSafetyTests), each a dataset folder merge and evaluate read.

The location is a local folder, `pvc://CLAIM/path` (read through the store's mount, as publish
reads its store) or an object-store URL (`s3://`, `gs://`), copied locally first. An empty location
is allowed and visible: both outputs are empty datasets whose manifest says why, so merge trains on
generated data only and the evaluation report says its out-of-distribution checks did not run.
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
from tiergate.profiles import Profile, PublishSettings
from tiergate.records import write_jsonl
from tiergate.store import locate
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)
NO_LOCATION_NOTE = "no public-data location given: nothing imported"
REMOTE_SCHEMES = ("s3://", "gs://", "gcs://")
MAX_LOCATION_CHARS = 1024


def check_location(location: str) -> str:
    """A location from the run form: a folder path, pvc://, s3:// or gs://; anything else is one clear line."""
    location = location.strip()
    if len(location) > MAX_LOCATION_CHARS or any(ord(char) < 32 for char in location):
        raise InputDataError("public-data location must be one line of at most 1024 characters")
    scheme = location.split("://", 1)[0] + "://" if "://" in location else ""
    if scheme and scheme not in (*REMOTE_SCHEMES, "pvc://", "file://"):
        raise InputDataError(f"public-data location {location[:80]!r}: use a folder, pvc://, s3:// or gs://, not {scheme}")
    if scheme in ("pvc://", *REMOTE_SCHEMES) and any(part in ("", ".", "..") for part in location[len(scheme) :].split("/")[:-1]):
        raise InputDataError(f"public-data location {location[:80]!r}: empty, '.' or '..' path segments are not allowed")
    return location


@contextmanager
def local_folder(location: str, settings: PublishSettings) -> Iterator[Path]:
    """The location as a local folder for the duration: remote sets are copied into a temporary one."""
    if location.startswith(REMOTE_SCHEMES):
        filesystem, path = locate(location, settings)
        if not filesystem.isdir(path):
            raise InputDataError(f"public-data location {location}: not a folder in the object store")
        with tempfile.TemporaryDirectory(prefix="tiergate-public-") as scratch:
            log.info("public data: copying %s", location)
            filesystem.get(path.rstrip("/") + "/", scratch, recursive=True)
            yield Path(scratch)
        return
    if location.startswith(("pvc://", "file://")):
        _, path = locate(location, settings)
        yield Path(path)
        return
    yield Path(location).expanduser()


def empty_dataset(taxonomy: Taxonomy, out_dir: Path, note: str) -> DatasetManifest:
    """A dataset with no records whose manifest says why (a run without public data)."""
    records = out_dir / "records.jsonl"
    write_jsonl(records, [])
    manifest = DatasetManifest(
        dataset="imported",
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.labels_sha256,
        files={"records.jsonl": file_entry(records, 0)},
        counts={"records": 0},
        notes=[note],
    )
    write_manifest(out_dir, manifest)
    return manifest


def import_public_location(
    taxonomy: Taxonomy, profile: Profile, location: str, train_dir: Path, evaluation_dir: Path, overwrite: bool = False
) -> tuple[DatasetManifest, DatasetManifest]:
    """Import the training sets into `train_dir` and the evaluation-only sets into `evaluation_dir`."""
    location = check_location(location)
    settings = profile.public_data
    with (
        atomic_output(Path(train_dir), overwrite) as train_staging,
        atomic_output(Path(evaluation_dir), overwrite) as evaluation_staging,
    ):
        if not location:
            log.info("public data: %s", NO_LOCATION_NOTE)
            return empty_dataset(taxonomy, train_staging, NO_LOCATION_NOTE), empty_dataset(
                taxonomy, evaluation_staging, NO_LOCATION_NOTE
            )
        with local_folder(location, profile.publish) as folder:
            if not folder.is_dir():
                raise InputDataError(f"public-data location not found or not a folder: {location}")
            train = import_public(taxonomy, folder, train_staging, settings.datasets, "train", settings.max_bad_fraction)
            evaluation = _evaluation_sets(taxonomy, folder, evaluation_staging, settings.max_bad_fraction)
    log.info("public data: %d training records, %d evaluation records", train.counts["records"], evaluation.counts["records"])
    return train, evaluation


def _evaluation_sets(taxonomy: Taxonomy, folder: Path, out_dir: Path, max_bad_fraction: float) -> DatasetManifest:
    """The out-of-distribution sets present at the location; none present is an empty dataset, not an error."""
    names = [adapter.name for adapter in load_adapters(taxonomy, role="evaluation")]
    if not any((folder / name).is_dir() for name in names):
        return empty_dataset(taxonomy, out_dir, f"no evaluation-only set ({', '.join(names)}) at the public-data location")
    return import_public(taxonomy, folder, out_dir, None, "evaluation", max_bad_fraction)
