"""Is this model repository the one the gate passed? One answer, wherever a model is trusted.

`verify_repository` is the single check used by packaging (on what it wrote), publishing (on
the local repository, the staged upload and the published copy), promotion and rollback (on
the store copy a commit points to), and loading (`tiergate repository fetch`, the KServe
storage-initializer-compatible step, and `tiergate serve`). It reads through fsspec, so a
local folder, a PVC and an S3 prefix are checked the same way.

What it proves, in order: the manifest parses and every name in it is safe; its digest is the
digest of its file list (and the one the caller expected, e.g. the last segment of a
content-addressed storageUri); the folder holds exactly the listed files, byte for byte; the
gate record inside is trusted (`tiergate.gate.require_trusted`) and is the record the manifest
names; and the model, thresholds and tokenizer the gate judged are the files being served.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from tiergate.artifacts import GATE_FILE, REPOSITORY_MANIFEST, TOKENIZER_FILE, RepositoryLayout
from tiergate.errors import PromotionRefused
from tiergate.gate import GatePolicy, GateRecord, check_signature, hmac_hex, parse_gate, require_trusted, signing_key
from tiergate.hashing import sha256_json, sha256_stream
from tiergate.strict import format_validation_error
from tiergate.taxonomy import taxonomy_sha256

# Aligned with charts/tiergate-serving/values.schema.json, so a name the store accepts is one the chart accepts.
NAME_PATTERNS = {
    "model name": re.compile(r"[a-z][a-z0-9-]{0,62}"),
    "model version": re.compile(r"[a-z0-9][a-z0-9._-]{0,62}"),
}
DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
MAX_PATH_LENGTH = 512


def check_name(kind: str, value: str) -> str:
    """A model name or version that becomes one path segment (and a Helm value): never `/`, `..` or a space."""
    pattern = NAME_PATTERNS[kind]
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise PromotionRefused(f"{kind} {str(value)[:80]!r} is not valid: use {pattern.pattern} (no '/', no '..')")
    return value


def check_digest(value: str) -> str:
    if not isinstance(value, str) or not DIGEST_PATTERN.fullmatch(value):
        raise PromotionRefused(f"{str(value)[:80]!r} is not a sha256 digest (64 lowercase hex characters)")
    return value


def check_relative_path(name: str) -> str:
    """A file name from a manifest: relative, POSIX, inside its folder (no `..`, no absolute path, no `\\`)."""
    path = PurePosixPath(name)
    unsafe = (
        not name
        or len(name) > MAX_PATH_LENGTH
        or "\\" in name
        or any(ord(char) < 32 for char in name)  # NUL, newlines and other control characters
        or not path.parts
        or path.is_absolute()
        or name != str(path)  # `a//b`, `./a`, trailing slash
        or any(part in ("", ".", "..") for part in path.parts)
    )
    if unsafe:
        raise PromotionRefused(f"file name {name[:120]!r} in {REPOSITORY_MANIFEST} is not a safe relative path")
    return name


class RepositoryManifest(BaseModel):
    """`repository.json`: what a packaged model repository holds, and the gate record it was built from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str
    model_version: str
    variant: str
    labels: list[str]
    taxonomy_sha256: str
    gate_digest: str
    gate_summary: dict[str, Any]
    files: dict[str, str]
    digest: str

    signature: str | None = None  # HMAC over the manifest when TIERGATE_GATE_KEY is set: binds every served file

    @field_validator("model_name")
    @classmethod
    def _safe_model_name(cls, value: str) -> str:
        return check_name("model name", value)

    @field_validator("model_version")
    @classmethod
    def _safe_version(cls, value: str) -> str:
        return check_name("model version", value)

    def unsigned_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"signature"})

    @field_validator("digest", "gate_digest")
    @classmethod
    def _digest(cls, value: str) -> str:
        return check_digest(value)

    @field_validator("files")
    @classmethod
    def _safe_files(cls, files: dict[str, str]) -> dict[str, str]:
        for name, digest in files.items():
            check_relative_path(name)
            check_digest(digest)
        if REPOSITORY_MANIFEST in files:
            raise ValueError(f"{REPOSITORY_MANIFEST} cannot list itself")
        return files


def _load_json(data: bytes, where: str) -> Any:
    """JSON from untrusted bytes: bad encodings, syntax and absurd nesting are refusals, not tracebacks."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise PromotionRefused(f"{where} is not valid JSON: {str(error)[:120]}") from None


def parse_manifest(text: bytes, where: str) -> RepositoryManifest:
    """A repository manifest from its bytes; anything malformed or unsafe is a one-line refusal."""
    data = _load_json(text, f"{where}/{REPOSITORY_MANIFEST}")
    try:
        return RepositoryManifest.model_validate(data)
    except ValidationError as error:
        raise PromotionRefused(f"{where}: not a valid {REPOSITORY_MANIFEST}: {format_validation_error(error)}") from None


def sign_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its HMAC signature when a signing key is configured (unchanged otherwise)."""
    key = signing_key()
    if key is None:
        return manifest
    unsigned = {name: value for name, value in manifest.items() if name != "signature"}
    return {**unsigned, "signature": hmac_hex(key, unsigned)}


def verify_manifest_signature(manifest: RepositoryManifest, where: str) -> None:
    """With a key configured, the manifest must carry this key's signature: then no served file, config or
    python model can change without the key, not only the files the gate judged."""
    check_signature(manifest.unsigned_json(), manifest.signature, f"{where}: {REPOSITORY_MANIFEST}")


@dataclass(frozen=True)
class VerifiedRepository:
    """A repository that passed `verify_repository`: its manifest and its trusted gate record."""

    location: str
    manifest: RepositoryManifest
    gate: GateRecord


def is_local(filesystem: Any) -> bool:
    protocol = getattr(filesystem, "protocol", None)
    return protocol == "file" or (isinstance(protocol, tuple) and "file" in protocol)


def judged_files() -> dict[str, str]:
    """Repository-relative path of each file the gate judged, by the `Judged` field that holds its digest."""
    layout = RepositoryLayout(Path(""))
    return {
        "model_sha256": str(layout.classifier_onnx),
        "thresholds_sha256": str(layout.thresholds),
        "tokenizer_sha256": str(layout.tokenizer_dir / TOKENIZER_FILE),
    }


def read_bytes(filesystem: Any, path: str, where: str) -> bytes:
    """A small file's bytes from any filesystem; missing or unreadable is a one-line refusal."""
    try:
        with filesystem.open(path, "rb") as handle:
            return bytes(handle.read())
    except FileNotFoundError:
        raise PromotionRefused(f"{where}: {path.rsplit('/', 1)[-1]} is missing") from None
    except OSError as error:
        raise PromotionRefused(f"{where}: cannot read {path.rsplit('/', 1)[-1]}: {error}") from None


def _listing(filesystem: Any, root: str, where: str) -> set[str]:
    """Every file under `root`, relative to it."""
    if not filesystem.isdir(root):
        raise PromotionRefused(f"{where}: no model repository there (the folder does not exist)")
    prefix = filesystem._strip_protocol(root).rstrip("/") + "/"
    found = set()
    for path in filesystem.find(root):
        stripped = filesystem._strip_protocol(path)
        found.add(stripped[len(prefix) :] if stripped.startswith(prefix) else stripped)
    return found


def verify_files(filesystem: Any, root: str, manifest: RepositoryManifest, where: str) -> None:
    """Exactly the listed files, each with its recorded sha256 (an extra file could be loaded by Triton)."""
    present = _listing(filesystem, root, where) - {REPOSITORY_MANIFEST}
    missing, extra = sorted(set(manifest.files) - present), sorted(present - set(manifest.files))
    if missing:
        raise PromotionRefused(f"{where}: {len(missing)} listed file(s) missing, first {missing[0]}")
    if extra:
        raise PromotionRefused(f"{where}: {len(extra)} file(s) not in the manifest, first {extra[0]}")
    local = is_local(filesystem)
    for name, expected in sorted(manifest.files.items()):
        path = f"{root.rstrip('/')}/{name}"
        if local and not Path(path).is_file():  # a FIFO or a link to /dev/zero would hang the digest
            raise PromotionRefused(f"{where}: {name} is not a regular file")
        try:
            with filesystem.open(f"{root.rstrip('/')}/{name}", "rb") as handle:
                actual = sha256_stream(handle)
        except OSError as error:
            raise PromotionRefused(f"{where}: cannot read {name}: {error}") from None
        if actual != expected:
            raise PromotionRefused(f"{where}: {name} has sha256 {actual[:12]}, the manifest says {expected[:12]}")


def verify_judged(gate: GateRecord, manifest: RepositoryManifest, where: str) -> None:
    """The model, thresholds and tokenizer in the repository are the ones the gate judged."""
    judged = gate.judged.model_dump()
    for field, name in judged_files().items():
        if manifest.files.get(name) != judged[field]:
            raise PromotionRefused(
                f"{where}: {name} is {str(manifest.files.get(name))[:12]} but the gate judged {judged[field][:12]}; refusing"
            )


def verify_repository(
    filesystem: Any,
    root: str,
    expected_digest: str | None = None,
    policy: GatePolicy | None = None,
    where: str | None = None,
) -> VerifiedRepository:
    """Refuse (PromotionRefused, one line) unless `root` holds exactly a gated, unaltered model repository."""
    root = str(root).rstrip("/")
    where = where or root
    filesystem.invalidate_cache()  # object stores cache listings and ETags: verify what is there now
    if not filesystem.isdir(root):
        raise PromotionRefused(f"{where}: no model repository there (the folder does not exist)")
    manifest = parse_manifest(read_bytes(filesystem, f"{root}/{REPOSITORY_MANIFEST}", where), where)
    if manifest.digest != sha256_json(manifest.files):
        raise PromotionRefused(f"{where}: the manifest's digest is not the digest of its file list; it was edited")
    if expected_digest is not None and manifest.digest != expected_digest:
        raise PromotionRefused(f"{where}: digest {manifest.digest[:12]} is not the expected {expected_digest[:12]}")
    if GATE_FILE not in manifest.files:
        raise PromotionRefused(f"{where}: the repository carries no {GATE_FILE}; it cannot be trusted")
    verify_manifest_signature(manifest, where)
    verify_files(filesystem, root, manifest, where)
    gate = parse_gate(
        _load_json(read_bytes(filesystem, f"{root}/{GATE_FILE}", where), f"{where}/{GATE_FILE}"), f"{where}/{GATE_FILE}"
    )
    if gate.digest() != manifest.gate_digest:
        raise PromotionRefused(f"{where}: {GATE_FILE} is not the gate record the manifest names")
    require_trusted(gate, "refusing this repository", policy)
    verify_judged(gate, manifest, where)
    verify_labels(filesystem, root, gate, manifest, where)
    return VerifiedRepository(where, manifest, gate)


def verify_labels(filesystem: Any, root: str, gate: GateRecord, manifest: RepositoryManifest, where: str) -> None:
    """The label file that names the served scores is the judged label list, in order (a swap would relabel them)."""
    name = str(RepositoryLayout(Path("")).labels)
    if name not in manifest.files:
        raise PromotionRefused(f"{where}: {name} is not in the repository")
    try:
        served = read_bytes(filesystem, f"{root}/{name}", where).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise PromotionRefused(f"{where}: {name} is not UTF-8 text") from None
    if taxonomy_sha256(served) != gate.judged.taxonomy_sha256 or manifest.labels != served:
        raise PromotionRefused(f"{where}: {name} does not list the labels the gate judged, in order; refusing")


def verify_local_repository(
    directory: Path, expected_digest: str | None = None, policy: GatePolicy | None = None, where: str | None = None
) -> VerifiedRepository:
    """`verify_repository` on a folder of this machine (`where`: the name to use in messages)."""
    import fsspec

    resolved = str(Path(directory).resolve())
    return verify_repository(fsspec.filesystem("file"), resolved, expected_digest, policy, where or str(directory))
