"""The export manifest: the last file an export writes, and the only way later steps read an export.

It names the checkpoint (digest of its files) and the merged dataset it was trained on, the
parity verdict of every gated variant, and the sha256 of every file the export produced.
Evaluation refuses an export without it (the export did not finish), one whose parity failed,
one whose files changed since, and one trained on other data than it is asked to evaluate on.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from tiergate.artifacts import EXPORT_MANIFEST
from tiergate.errors import InputDataError, LabelMismatchError
from tiergate.hashing import folder_digests, read_json, sha256_json, write_json
from tiergate.strict import StrictModel, format_validation_error
from tiergate.taxonomy import Taxonomy


class ExportManifest(StrictModel):
    labels: list[str]
    taxonomy_sha256: str
    checkpoint_sha256: str
    dataset_sha256: str  # the merged dataset the checkpoint was trained on (and parity was judged on)
    parity: dict[str, bool]
    parity_passed: bool
    files: dict[str, str]

    def digest(self) -> str:
        return sha256_json(self.model_dump(mode="json"))


def checkpoint_sha256(checkpoint_dir: Path) -> str:
    """One digest for a checkpoint folder: weights, config, tokenizer and metadata."""
    return sha256_json(folder_digests(checkpoint_dir))


def write_export_manifest(export_dir: Path, manifest: ExportManifest) -> None:
    write_json(Path(export_dir) / EXPORT_MANIFEST, manifest.model_dump(mode="json"))


def load_export_manifest(export_dir: Path) -> ExportManifest:
    """Read the manifest; its absence means the export never finished."""
    path = Path(export_dir) / EXPORT_MANIFEST
    if not path.is_file():
        raise InputDataError(f"{export_dir} has no {EXPORT_MANIFEST}: the export did not finish; re-run it")
    try:
        return ExportManifest.model_validate(read_json(path))
    except ValidationError as error:
        raise InputDataError(f"{path}: {format_validation_error(error)}") from None
    except ValueError as error:
        raise InputDataError(f"{path} is not valid JSON: {error}") from None


def verify_export(export_dir: Path, taxonomy: Taxonomy) -> ExportManifest:
    """Refuse an unfinished export, one that failed parity, one for other labels, or one whose files changed."""
    manifest = load_export_manifest(export_dir)
    if manifest.labels != taxonomy.labels or manifest.taxonomy_sha256 != taxonomy.labels_sha256:
        raise LabelMismatchError(f"{export_dir} was exported for other labels than the taxonomy's")
    if not manifest.parity_passed:
        failed = ", ".join(name for name, passed in manifest.parity.items() if not passed)
        raise InputDataError(f"{export_dir} failed its parity gate ({failed}); it cannot be evaluated or served")
    actual = folder_digests(export_dir, exclude=frozenset({EXPORT_MANIFEST}))
    for name, expected in manifest.files.items():
        if actual.get(name) != expected:
            state = "is missing" if name not in actual else f"has sha256 {actual[name][:12]}, the export wrote {expected[:12]}"
            raise InputDataError(f"{export_dir}/{name} {state}; refusing a changed export")
    return manifest


def require_same_dataset(trained_on: str, data_sha256: str, data_dir: Path, what: str) -> None:
    """A checkpoint is only judged on the dataset it was trained on: another split would leak training rows into test."""
    if trained_on != data_sha256:
        raise InputDataError(
            f"the {what} was trained on dataset {trained_on[:12]} but {data_dir} is dataset {data_sha256[:12]} "
            "(another merge or split salt: its test records may be in the training set); refusing"
        )
