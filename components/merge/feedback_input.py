"""The feedback input: a run's feedback-data location → the reviewed items merge reads.

The location (run form `feedback_data`, `tiergate pipeline run --feedback-data`) holds a folder that
`tiergate feedback export` wrote; it is checked and resolved exactly as the public-data location is
(a folder, `pvc://CLAIM/path`, `s3://`, `gs://`; no segment may climb out; empty: none), by the same
functions. Merge gives these records' labels precedence over every other source, so the folder is
checked before it is trusted: a feedback manifest listing only the export's files, no links, every
file matching its digest, every record a reviewed item (source `human`). Then it is copied whole
(with the export's report, read by the dataset report) into the task's output.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError

from tiergate.artifacts import DATASET_MANIFEST
from tiergate.components.generate.public_step import empty_dataset, local_folder
from tiergate.components.merge.precedence import is_human
from tiergate.datasets import DatasetManifest, load_manifest
from tiergate.errors import InputDataError
from tiergate.feedback.export import DATASET, EXPORT_REPORT, PROVENANCE, RECORDS
from tiergate.outputs import atomic_output
from tiergate.profiles import Profile
from tiergate.records import iter_jsonl, validation_summary
from tiergate.taxonomy import Taxonomy

log = logging.getLogger(__name__)
FEEDBACK_DATA = "feedback-data"  # the run-form input, as messages name it
NO_FEEDBACK_NOTE = "no feedback-data location given: no human labels"
EXPORT_FILES = frozenset({RECORDS, PROVENANCE})  # the data files an export's manifest lists


class ExportSummary(BaseModel):
    """What the dataset report says of an export: the reviewed items it kept, and those its agreement floor left out."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    reviewed_items: NonNegativeInt
    exported: NonNegativeInt
    left_out: dict[str, NonNegativeInt]
    min_agreement: float = Field(ge=0, le=1)


def read_export_summary(directory: Path) -> ExportSummary | None:
    """The export report beside a feedback dataset (None where there is none); a malformed one is one line."""
    path = Path(directory) / EXPORT_REPORT
    if not path.is_file():
        return None
    try:
        return ExportSummary.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise InputDataError(f"{path}: not a feedback export report ({validation_summary(error)})") from None


def check_export(taxonomy: Taxonomy, folder: Path, location: str) -> DatasetManifest:
    """`folder` as a feedback export, or one line saying why not (names are checked before any is opened)."""
    where = f"{FEEDBACK_DATA} {location}"
    for name in (DATASET_MANIFEST, *sorted(EXPORT_FILES), EXPORT_REPORT):
        if (folder / name).is_symlink():
            raise InputDataError(f"{where}: {name} is a link; an export is plain files (links are not followed)")
    if not (folder / DATASET_MANIFEST).is_file():
        raise InputDataError(f"{where}: no {DATASET_MANIFEST}; point it at a folder `tiergate feedback export` wrote")
    manifest = load_manifest(folder, taxonomy, verify_files=False)
    if manifest.dataset != DATASET:
        raise InputDataError(f"{where}: a {manifest.dataset!r} dataset, not a feedback export (`tiergate feedback export`)")
    strangers = sorted(set(manifest.files) - EXPORT_FILES)
    if strangers or RECORDS not in manifest.files:
        listed = ", ".join(repr(name[:60]) for name in strangers) or f"no {RECORDS}"
        raise InputDataError(f"{where}: the manifest lists {listed}; an export lists {', '.join(sorted(EXPORT_FILES))}")
    manifest = load_manifest(folder, taxonomy)  # now the digests
    for record in iter_jsonl(folder / RECORDS):
        if not is_human(record):
            raise InputDataError(
                f"{where}: record {record.id} comes from {record.source.generator!r}, not from reviewers; "
                "only reviewed items may carry labels that take precedence"
            )
    read_export_summary(folder)  # a malformed report is refused here, not in the middle of merge
    return manifest


def stage_feedback(
    taxonomy: Taxonomy, profile: Profile, location: str, out_dir: Path, overwrite: bool = False
) -> DatasetManifest:
    """Copy the export at `location` into `out_dir` once checked (an empty feedback dataset for no location)."""
    with (
        atomic_output(Path(out_dir), overwrite) as staging,
        local_folder(location, profile.publish, what=FEEDBACK_DATA) as folder,
    ):
        if folder is None:
            log.info("feedback data: %s", NO_FEEDBACK_NOTE)
            return empty_dataset(taxonomy, staging, NO_FEEDBACK_NOTE, dataset=DATASET)
        if not folder.is_dir():
            raise InputDataError(f"{FEEDBACK_DATA} location not found or not a folder: {location}")
        manifest = check_export(taxonomy, folder, location)
        for name in (DATASET_MANIFEST, *manifest.files, EXPORT_REPORT):
            if (folder / name).is_file():
                shutil.copyfile(folder / name, staging / name)
    log.info("feedback data: %s reviewed items", manifest.counts.get("records", "?"))
    return manifest
