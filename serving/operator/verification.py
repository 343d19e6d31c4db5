"""Before any revision is created: is the stored copy the version the spec names, as its gate passed it?

The trust chain's own check (`tiergate.store.verify_published`: in the configured store, published,
every file as the manifest lists it, the gate record trusted under the configured policy and judging
these very files), plus the two digests the spec pins, so a hand-edited ModerationModel pointing at
another stored version, or at this version with another gate record, is refused.
"""

from __future__ import annotations

from typing import Literal

from tiergate.errors import TiergateError
from tiergate.gate import GatePolicy
from tiergate.moderation_model import ModelRef, VersionRef
from tiergate.profiles import PublishSettings
from tiergate.store import parse_uri, verify_published

Outcome = Literal["verified", "refused", "unavailable"]


def verify_model(
    model: ModelRef, store: PublishSettings, policy: GatePolicy, check_gate_digest: bool = True
) -> tuple[Outcome, str]:
    """(outcome, one line). Never raises: a refusal becomes the Failed phase's message; an unreachable
    store (`unavailable`) is retried, since a network blip must not fail a good version for good."""
    try:
        stored = parse_uri(model.storage_uri)
        if (stored.model_name, stored.version, stored.digest) != (model.name, model.version, model.digest):
            return "refused", (
                f"storageUri names {stored.model_name} {stored.version} {stored.digest[:12]}, but the spec asks for "
                f"{model.name} {model.version} {model.digest[:12]}"
            )
        verified = verify_published(model.storage_uri, store, policy)
    except TiergateError as error:
        return "refused", str(error)
    except OSError as error:  # the store is unreachable or refuses us: a reason, not a crash
        return "unavailable", f"{model.storage_uri}: the model store could not be read: {error}"
    if check_gate_digest and verified.manifest.gate_digest != model.gate_digest:
        return "refused", (
            f"{model.storage_uri}: the stored gate record is {verified.manifest.gate_digest[:12]}, "
            f"the spec expects {model.gate_digest[:12]}"
        )
    return "verified", f"{model.version}: {len(verified.manifest.files)} files match digest {model.digest[:12]}; gate passed"


def verify_version(version: VersionRef, store: PublishSettings, policy: GatePolicy) -> tuple[Outcome, str]:
    """`verify_model` for a version the status remembers (the one to serve, or fall back to)."""
    try:
        stored = parse_uri(version.storage_uri)
    except TiergateError as error:
        return "refused", str(error)
    model = ModelRef.model_construct(
        name=stored.model_name,
        version=version.version,
        storage_uri=version.storage_uri,
        digest=version.digest,
        gate_digest=version.gate_digest,
    )
    return verify_model(model, store, policy, check_gate_digest=bool(version.gate_digest))
