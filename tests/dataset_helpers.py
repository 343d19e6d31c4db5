"""Writing a dataset folder (records.jsonl + manifest) the way the importers do, for tests that feed merge."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tiergate.datasets import DatasetManifest, file_entry, write_manifest
from tiergate.records import Record, write_jsonl
from tiergate.taxonomy import Taxonomy


def write_dataset(taxonomy: Taxonomy, directory: Path, records: Sequence[Record], kind: str = "imported") -> Path:
    """`directory` as a dataset of `records` for this taxonomy (manifest with the file's hash and count)."""
    path = Path(directory) / "records.jsonl"
    write_jsonl(path, records)
    manifest = DatasetManifest(
        dataset=kind,
        labels=taxonomy.labels,
        taxonomy_sha256=taxonomy.labels_sha256,
        files={"records.jsonl": file_entry(path, len(records))},
    )
    write_manifest(Path(directory), manifest)
    return Path(directory)
