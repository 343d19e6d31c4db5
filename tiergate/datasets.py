"""Dataset manifests: every dataset directory says what it holds and for which labels.

A manifest records the ordered labels and taxonomy hash, counts, the config used and
the sha256 of every file, so a consumer can refuse a dataset built for another
taxonomy and detect a file changed after the fact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tiergate.artifacts import DATASET_MANIFEST
from tiergate.errors import InputDataError
from tiergate.hashing import sha256_file, sha256_json, write_json
from tiergate.labels import load_labelled_json
from tiergate.taxonomy import Taxonomy


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str
    records: int


class DatasetManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str  # generated | merged | imported
    labels: list[str]
    taxonomy_sha256: str
    files: dict[str, FileEntry]
    counts: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    smoke_test: bool = False
    notes: list[str] = Field(default_factory=list)

    @property
    def dataset_sha256(self) -> str:
        """One digest for the whole dataset: the hashes of its files, in name order."""
        return sha256_json({name: entry.sha256 for name, entry in sorted(self.files.items())})


def write_manifest(directory: Path, manifest: DatasetManifest) -> Path:
    path = Path(directory) / DATASET_MANIFEST
    write_json(path, manifest.model_dump(mode="json"))
    return path


def file_entry(path: Path, records: int) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), records=records)


def load_manifest(directory: Path, taxonomy: Taxonomy, verify_files: bool = True) -> DatasetManifest:
    """Read and check a dataset's manifest against the taxonomy (labels, order, file hashes)."""
    manifest = load_labelled_json(Path(directory) / DATASET_MANIFEST, DatasetManifest, taxonomy, "dataset")
    if verify_files:
        for name, entry in manifest.files.items():
            file_path = Path(directory) / name
            if not file_path.is_file():
                raise InputDataError(f"{directory}: manifest lists {name} but it is missing")
            actual = sha256_file(file_path)
            if actual != entry.sha256:
                raise InputDataError(f"{file_path}: sha256 {actual[:12]} does not match manifest {entry.sha256[:12]}")
    return manifest
