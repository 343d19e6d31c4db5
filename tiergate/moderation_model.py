"""The ModerationModel resource in Python: the spec the operator reads and the status it writes.

The CRD (`tiergate/crds/tiergate.io_moderationmodels.yaml`) is the contract with the API server;
these models are the same contract for the operator, with the same defaults, so a resource the API
server admitted (and defaulted) parses here, and a spec the operator cannot act on is one line in the
resource's status, never a traceback. tests/unit/test_operator_crd.py holds the two in step.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from tiergate.errors import ConfigError
from tiergate.strict import format_validation_error

GROUP = "tiergate.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModerationModel"
PLURAL = "moderationmodels"
FINALIZER = f"{GROUP}/rollout"

Phase = Literal["Pending", "Verifying", "Canary", "Promoted", "RolledBack", "Failed"]
SETTLED_PHASES: frozenset[str] = frozenset({"Promoted", "RolledBack", "Failed"})


class _Resource(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown spec keys are errors (the CRD prunes them anyway)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ModelRef(_Resource):
    """A version as promote committed it: what is loaded, and the digests its stored copy must verify against."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    version: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    storage_uri: str = Field(max_length=1024, pattern=r"^(s3|gs|pvc|https?|file)://.+/[0-9a-f]{64}$")
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    gate_digest: str = Field(pattern=r"^[0-9a-f]{64}$")


class Resources(_Resource):
    requests: dict[str, int | str] = Field(default_factory=dict)
    limits: dict[str, int | str] = Field(default_factory=dict)


class ServingSpec(_Resource):
    runtime: str = Field(default="tiergate-triton", max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=4, ge=1)
    scale_metric: Literal["cpu", "memory", "concurrency", "rps"] = "concurrency"
    scale_target: int = Field(default=8, ge=1)
    gpu: int = Field(default=1, ge=0, le=8)
    resources: Resources = Field(default_factory=Resources)
    service_account_name: str = Field(default="", max_length=253)
    gate_key_secret: str = Field(default="", max_length=253)
    optional_disabled: list[str] = Field(default_factory=list)
    prometheus_scraping: bool = True


class SuiteRule(_Resource):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,63}$")
    min_pass_rate: float = Field(default=1.0, ge=0.0, le=1.0)


class AnalysisSpec(_Resource):
    suites: list[SuiteRule] = Field(default_factory=list)
    request_timeout_seconds: int = Field(default=30, ge=1, le=600)


class RolloutSpec(_Resource):
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100], min_length=1, max_length=10)
    step_interval_seconds: int = Field(default=60, ge=0, le=86400)
    timeout_seconds: int = Field(default=900, ge=30, le=86400)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)

    @field_validator("steps")
    @classmethod
    def _increasing_to_full(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= step <= 100 for step in steps):
            raise ValueError("every step is a percentage from 1 to 100")
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
            raise ValueError("steps must increase")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100")
        return steps


class ModerationModelSpec(_Resource):
    model: ModelRef
    serving: ServingSpec = Field(default_factory=ServingSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)


class VersionRef(_Resource):
    """A version as the status remembers it (the candidate, what serves, what served before)."""

    version: str
    storage_uri: str
    digest: str
    gate_digest: str = ""

    @classmethod
    def of(cls, model: ModelRef) -> VersionRef:
        return cls(version=model.version, storage_uri=model.storage_uri, digest=model.digest, gate_digest=model.gate_digest)

    def same(self, model: ModelRef) -> bool:
        return (self.storage_uri, self.digest) == (model.storage_uri, model.digest)


class FailingVector(_Resource):
    id: str
    suite: str
    text: str
    context: str = ""


class Analysis(_Resource):
    """One live verification of a revision: the regression suites against its URL."""

    version: str
    step_index: int
    traffic_percent: int
    time: str
    passed: bool
    reason: str
    url: str = ""
    suites: dict[str, str] = Field(default_factory=dict)
    failing_vectors: list[FailingVector] = Field(default_factory=list)


class Condition(_Resource):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int | None = None


class ModerationModelStatus(_Resource):
    """Everything a rollout needs to resume: an operator restarted mid-rollout reads its place from here."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    phase: Phase = "Pending"
    message: str = ""
    observed_generation: int = 0
    traffic_percent: int = 0
    step_index: int = 0
    step_started_at: str | None = None
    rollout_started_at: str | None = None
    candidate: VersionRef | None = None
    current: VersionRef | None = None
    previous: VersionRef | None = None
    rejected_generation: int | None = None
    rejected_key: str | None = None  # sha256 of the rejected spec's model + rollout: the same try is not repeated
    last_analysis: Analysis | None = None
    conditions: list[Condition] = Field(default_factory=list)


def parse_spec(resource: dict[str, Any]) -> ModerationModelSpec:
    """The resource's spec, or ConfigError naming every bad field (becomes the Failed phase's message)."""
    try:
        return ModerationModelSpec.model_validate(resource.get("spec") or {})
    except ValidationError as error:
        raise ConfigError(f"spec: {format_validation_error(error)}") from None


def parse_status(resource: dict[str, Any]) -> tuple[ModerationModelStatus, str]:
    """The recorded status, and what was wrong with it ("" when nothing).

    A status that no longer parses (a hand edit, a newer operator's phase) is salvaged field by field and
    its phase set to Pending, which starts the spec's rollout over from verification. What serves
    (`current`) is kept whenever it still reads, so a damaged status never drops the verified version.
    """
    raw = resource.get("status")
    try:
        return ModerationModelStatus.model_validate(raw or {}), ""
    except ValidationError as error:
        problem = format_validation_error(error)
    salvaged: dict[str, Any] = {}
    fields = ModerationModelStatus.model_fields
    for name, info in fields.items():
        key = info.alias or name
        if not isinstance(raw, dict) or key not in raw or name in ("phase", "step_index", "step_started_at"):
            continue
        try:
            ModerationModelStatus.model_validate({key: raw[key]})
        except ValidationError:
            continue
        salvaged[key] = raw[key]
    return ModerationModelStatus.model_validate({**salvaged, "phase": "Pending"}), problem
