"""Stable hashing: canonical JSON and file digests, so equal inputs give equal hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, BinaryIO


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace variance, for hashing and byte-stable files."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(value: Any) -> str:
    return sha256_text(canonical_json(value))


def sha256_stream(handle: BinaryIO, chunk_size: int = 1 << 20) -> str:
    """Digest of an open binary file (local or fsspec), read in chunks so large models fit in memory."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(chunk_size), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return sha256_stream(handle)


def folder_digests(directory: Path, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    """sha256 of every file below `directory`, by POSIX relative path (model repositories, exports, checkpoints)."""
    directory = Path(directory)
    return {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.relative_to(directory).as_posix() not in exclude
    }


def write_json(path: Path, value: Any) -> None:
    """Pretty, sorted, newline-terminated JSON: diffable and byte-identical across runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
