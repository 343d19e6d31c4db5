"""Step outputs are written whole or not at all.

Every step writes into a fresh hidden sibling of its output folder and renames it into place
when it is complete, so a crash, a full disk or a read-only target leaves the previous output
exactly as it was. A lock file beside the output keeps two writers apart, and an existing,
non-empty output is replaced only when the caller says so (`--overwrite`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tiergate.errors import OutputError, TiergateError


def _describe(error: OSError) -> str:
    return error.strerror or errno.errorcode.get(error.errno or 0, str(error))


@contextmanager
def exclusive_lock(lock_path: Path, busy: TiergateError, cannot_open: type[TiergateError]) -> Iterator[None]:
    """Hold an flock on `lock_path` or raise `busy` at once (never wait): two writers never interleave."""
    try:
        handle = Path(lock_path).open("a+")  # noqa: SIM115 - held open for the lock's lifetime
    except OSError as error:
        raise cannot_open(f"cannot write to {Path(lock_path).parent}: {_describe(error)}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        yield
    finally:
        handle.close()  # closing releases the lock; the empty lock file stays (removing it would race)


def check_apart(out_dir: Path, inputs: Sequence[Path | None]) -> None:
    """Refuse an output that is, contains or lies inside one of the step's inputs (replacing it would delete it)."""
    out = Path(out_dir).resolve()
    for item in inputs:
        if item is None:
            continue
        source = Path(item).resolve()
        if out == source or out in source.parents or source in out.parents:
            raise OutputError(f"--out {out_dir} overlaps the input {item}; writing there would replace or alter it")


@contextmanager
def atomic_output(out_dir: Path, overwrite: bool = False, inputs: Sequence[Path | None] = ()) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces `out_dir`, on any failure it is removed."""
    check_apart(out_dir, inputs)
    out_dir = Path(out_dir).absolute()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {out_dir.parent}: {_describe(error)}") from None
    busy = OutputError(f"another process is writing {out_dir} right now; wait for it or choose another --out")
    with exclusive_lock(out_dir.parent / f".{out_dir.name}.lock", busy, OutputError):
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputError(f"{out_dir} exists and is not a folder")
        if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
            raise OutputError(f"{out_dir} is not empty; pass --overwrite to replace it")
        staging = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            staging.mkdir()
            yield staging
            replace(staging, out_dir)
        except OSError as error:
            raise OutputError(f"could not write {out_dir} ({_describe(error)}); the previous output is untouched") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def replace(staging: Path, out_dir: Path) -> None:
    """Swap the finished staging folder in; the old output is removed only after the new one is in place."""
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    if out_dir.exists():
        out_dir.rename(old)
    try:
        staging.rename(out_dir)
    except OSError:
        if old.exists():
            old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
