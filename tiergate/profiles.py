"""Run profiles: every number a step uses that is not taxonomy policy lives here.

Profiles are YAML with `extends:` for inheritance; the resolved profile is validated
(unknown keys are errors) and saved beside the artifacts of a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from tiergate.errors import ConfigError
from tiergate.hashing import sha256_json
from tiergate.paths import config_path
from tiergate.strict import StrictModel, format_validation_error
from tiergate.yaml_io import load_yaml

GeneratorKind = Literal["offline", "anthropic", "openai-compatible"]
RecordKindName = Literal["positive", "context", "hard_negative", "innocuous", "perturbation"]


class GeneratorSettings(StrictModel):
    kind: GeneratorKind
    model: str
    examples_per_request: int = Field(ge=1, le=100)
    max_tokens: int = Field(ge=64)
    temperature: float = Field(ge=0.0, le=2.0)
    base_url: str | None = None
    api_key_env: str
    use_batches: bool
    poll_interval_s: float = Field(gt=0)
    max_wait_s: float = Field(gt=0)
    max_retries: int = Field(ge=0)
    retry_base_delay_s: float = Field(ge=0)
    request_timeout_s: float = Field(gt=0)
    min_yield_fraction: float = Field(ge=0, le=1)
    fail_on_shortfall: bool


class PerturbationSettings(StrictModel):
    fraction: float = Field(ge=0, le=1)
    max_edits: int = Field(ge=1)


class NearDuplicateSettings(StrictModel):
    enabled: bool
    threshold: float = Field(gt=0, le=1)
    shingle_size: int = Field(ge=1)
    num_perm: int = Field(ge=16)


class LeakageSettings(StrictModel):
    """Eval-leakage guard: a training text this similar to a regression vector is quarantined (components/merge/leakage.py)."""

    threshold: float = Field(gt=0, le=1)  # exact Jaccard of character shingles of the normalised texts
    shingle_size: int = Field(ge=1)
    num_perm: int = Field(ge=16)


class SplitSettings(StrictModel):
    train: float = Field(gt=0, lt=1)
    val: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)
    salt: str

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSettings:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + val + test must be 1.0, got {total}")
        return self


class CapSettings(StrictModel):
    """How much any one source may contribute, so one large public set cannot drown the rest.

    Sources are named as the dataset report names them: a generator (`offline`, `anthropic`) or
    `public:<set>`. Caps apply after cleaning and before the splits, to a stable hash order of the
    texts, so the same inputs always keep the same records."""

    per_source: dict[str, int] = Field(default_factory=dict)  # source -> most records kept from it
    default_per_source: int | None = Field(default=None, ge=1)  # for sources not named in per_source; null: no cap
    per_category: int | None = Field(default=None, ge=1)  # most positives of one category from one source; null: no cap

    @model_validator(mode="after")
    def _positive_caps(self) -> CapSettings:
        bad = sorted(name for name, cap in self.per_source.items() if cap < 1)
        if bad:
            raise ValueError(f"per_source caps must be at least 1: {bad}")
        return self


class MergeSettings(StrictModel):
    near_duplicate: NearDuplicateSettings
    leakage: LeakageSettings
    caps: CapSettings = Field(default_factory=CapSettings)
    keyword_colabel_rules: bool
    previous_model_min_score: float = Field(gt=0, le=1)
    splits: SplitSettings
    min_test_support: int = Field(ge=1)
    phases: dict[str, list[RecordKindName]] = Field(min_length=1)


class PublicDataSettings(StrictModel):
    """Which public labelled sets a run imports from the run's public-data location (config/datasets/)."""

    datasets: list[str] | None = None  # adapter names; null: every training set found at the location
    max_bad_fraction: float = Field(default=0.05, ge=0, le=1)  # more bad rows than this in one set fails the import


class PhaseSettings(StrictModel):
    epochs: int = Field(ge=1)


class TrainSettings(StrictModel):
    base_model: str
    max_length: int = Field(ge=8, le=512)
    learning_rate: float = Field(gt=0, lt=1)
    # The new classification head's own rate (None: learning_rate): the encoder moves gently, the head fast.
    head_learning_rate: float | None = Field(default=None, gt=0, lt=1)
    batch_size: int = Field(ge=1)
    eval_batch_size: int = Field(ge=1)
    warmup_ratio: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    label_smoothing: float = Field(ge=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"]
    phases: dict[str, PhaseSettings] = Field(min_length=1)
    early_stopping_patience: int = Field(ge=1)
    eval_threshold: float = Field(gt=0, lt=1)
    deterministic: bool
    mixed_precision: Literal["auto", "fp16", "bf16", "none"]
    dataloader_workers: int = Field(ge=0)
    group_by_length: bool = False  # batches of similar lengths: less padding for texts of mixed lengths (real posts)


class ParitySettings(StrictModel):
    max_texts: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    max_abs_logit_diff_fp32: float = Field(gt=0)
    max_abs_logit_diff_fp16: float = Field(gt=0)
    max_abs_logit_diff_int8: float = Field(gt=0)
    min_decision_agreement: float = Field(gt=0, le=1)
    decision_threshold: float = Field(gt=0, lt=1)
    worst_examples: int = Field(ge=0)


class Int8Settings(StrictModel):
    enabled: bool


class LatencySettings(StrictModel):
    batch_sizes: list[int] = Field(min_length=1)
    repeats: int = Field(ge=1)


class WindowSettings(StrictModel):
    """How evaluation and serving read a text longer than `train.max_length` tokens (tiergate.preprocessing)."""

    stride: int = Field(ge=0)  # tokens shared by neighbouring windows, so a phrase cut by one is whole in the next
    max_windows: int = Field(ge=1)  # per reading; serving refuses a text that needs more (it would not all be read)


class ExportSettings(StrictModel):
    opset: int = Field(ge=13)
    parity: ParitySettings
    int8: Int8Settings
    latency: LatencySettings
    windows: WindowSettings


class EvaluateSettings(StrictModel):
    variant: Literal["fp16", "fp32"]
    batch_size: int = Field(ge=1)
    bootstrap_samples: int = Field(ge=0)
    confidence: float = Field(gt=0, lt=1)
    not_measurable: Literal["fail", "warn"]
    regression_dir: str
    # Share of each `all` suite's required vectors a model must pass. 1.0 but for the smoke profile,
    # whose model is trained on templated text (README "Regression vectors").
    regression_min_pass_rate: float = Field(default=1.0, gt=0, le=1)
    pr_curve_points: int = Field(ge=2)
    error_examples: int = Field(ge=0)  # top-k false positives / negatives per category in the report


class Resources(StrictModel):
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


class RetrySettings(StrictModel):
    """KFP retry policy for the tasks that talk to networks (LLM API, object store, Git remote).

    Durations are whole seconds ("30s"): the form KFP's protobuf Duration accepts.
    `num_retries: 0` compiles no policy (a local run's offline generator fails the same way twice).
    """

    num_retries: int = Field(ge=0)
    backoff_duration: str = Field(pattern=r"^[0-9]+s$")
    backoff_factor: float = Field(ge=1)
    backoff_max_duration: str = Field(pattern=r"^[0-9]+s$")


class PipelineSettings(StrictModel):
    image_cpu: str
    image_gpu: str
    generate_parallelism: int = Field(ge=1)
    accelerator_type: str
    accelerator_limit: int = Field(ge=1)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(default_factory=list)
    anthropic_secret: str
    anthropic_secret_key: str
    gitops_secret: str
    gitops_secret_key: str
    object_store_secret: str  # publish's credentials for s3:// / gs:// stores
    object_store_secret_env: dict[str, str]  # secret key -> environment variable fsspec reads
    cache_pvc: str
    cache_mount: str
    network_retry: RetrySettings
    resources: dict[Literal["light", "gpu"], Resources]


class ServingSettings(StrictModel):
    model_name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    variant: Literal["production", "local"]
    max_batch_size: int = Field(ge=1)
    preferred_batch_sizes: list[int] = Field(min_length=1)
    max_queue_delay_us: int = Field(ge=0)
    instance_count: int = Field(ge=1)
    max_text_chars: int = Field(ge=1)
    max_rows_per_request: int = Field(ge=2)  # model rows (windows x readings) one request may need: bounds its work
    optional_disabled: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _batches_fit(self) -> ServingSettings:
        too_big = [size for size in self.preferred_batch_sizes if size > self.max_batch_size]
        if too_big:
            raise ValueError(f"preferred_batch_sizes {too_big} exceed max_batch_size {self.max_batch_size}")
        if self.max_rows_per_request < 2 * self.max_batch_size:
            raise ValueError(
                f"max_rows_per_request {self.max_rows_per_request} must fit a full batch of short texts read twice "
                f"(2 x max_batch_size = {2 * self.max_batch_size})"
            )
        return self


class PublishSettings(StrictModel):
    store: str = Field(pattern=r"^(s3|gs|pvc|file)://.+|^/.+")
    pvc_mount_root: str
    storage_options: dict[str, Any] = Field(default_factory=dict)


class PromoteSettings(StrictModel):
    repo_url: str
    branch: str
    values_path: str
    chart_path: str
    mode: Literal["push", "branch"]
    token_env: str
    author_name: str
    author_email: str
    max_push_attempts: int = Field(ge=1)


class FeedbackSettings(StrictModel):
    """The feedback loop (tiergate/feedback, FeedbackClient, the review API): what a submission may
    hold, which predictions go to review, what the export keeps, how the client retries and queues."""

    max_text_chars: int = Field(ge=1)  # a longer text is refused (client and server)
    max_reason_chars: int = Field(ge=1)
    max_request_bytes: int = Field(ge=1024)  # the review API refuses a larger body (413) before reading it all
    uncertainty_margin: float = Field(gt=0, lt=1)  # |score - threshold| within this: a boundary case
    sample_rate: float = Field(ge=0, le=1)  # share of boundary predictions log_prediction sends to review
    second_review_share: float = Field(ge=0, le=1)  # share of items drawn for a second, independent review
    min_agreement: float = Field(ge=0, le=1)  # export leaves out items whose reviewers agree on less
    db_timeout_s: float = Field(gt=0)  # the SQLite write lock / a PostgreSQL connection
    client_timeout_s: float = Field(gt=0)
    client_retries: int = Field(ge=0)
    client_retry_base_delay_s: float = Field(ge=0)
    client_retry_max_delay_s: float = Field(ge=0)
    client_queue_size: int = Field(ge=1)  # log_prediction's bounded queue: a full one drops and counts
    client_close_timeout_s: float = Field(ge=0)
    # The review web app (serving/review): per-token token buckets, in-process sessions, the try-it call.
    rate_limit_per_minute: float = Field(gt=0)  # sustained form posts per reviewer token (UI); more get 429
    rate_limit_burst: int = Field(ge=1)  # posts a token may make at once before the rate applies
    api_rate_limit_per_minute: float = Field(gt=0)  # sustained API POSTs per bearer token (services); more get 429
    api_rate_limit_burst: int = Field(ge=1)
    login_rate_limit_per_minute: float = Field(gt=0)  # login attempts per client address
    login_rate_limit_burst: int = Field(ge=1)
    rate_limit_max_keys: int = Field(ge=1)  # buckets kept (least recently used dropped): bounded memory
    session_idle_s: float = Field(gt=0)  # a session unused this long is logged out
    session_max_s: float = Field(gt=0)  # and any session after this long
    max_sessions: int = Field(ge=1)  # sessions held at once; the oldest is dropped past this
    triton_timeout_s: float = Field(gt=0)  # the try-it page's call to the Triton ensemble

    @model_validator(mode="after")
    def _a_full_item_fits_a_request(self) -> FeedbackSettings:
        needed = 6 * (self.max_text_chars + self.max_reason_chars)  # JSON escapes a character in at most 6 bytes
        if self.max_request_bytes < needed:
            raise ValueError(f"max_request_bytes {self.max_request_bytes} cannot hold a full text and reason ({needed} bytes)")
        return self


class Profile(StrictModel):
    name: str
    seed: int
    generation_counts: str
    generator: GeneratorSettings
    perturbation: PerturbationSettings
    public_data: PublicDataSettings = Field(default_factory=PublicDataSettings)
    merge: MergeSettings
    train: TrainSettings
    export: ExportSettings
    evaluate: EvaluateSettings
    pipeline: PipelineSettings
    serving: ServingSettings
    publish: PublishSettings
    promote: PromoteSettings
    feedback: FeedbackSettings

    @model_validator(mode="after")
    def _windows_advance(self) -> Profile:
        if self.export.windows.stride * 2 > self.train.max_length:
            raise ValueError(
                f"export.windows.stride {self.export.windows.stride} must be at most half of train.max_length "
                f"{self.train.max_length}, or windows would barely advance"
            )
        return self

    @model_validator(mode="after")
    def _phases_are_merge_phases(self) -> Profile:
        unknown = sorted(set(self.train.phases) - set(self.merge.phases))
        if unknown:
            raise ValueError(f"train.phases {unknown} are not datasets built by merge.phases {sorted(self.merge.phases)}")
        return self

    @property
    def sha256(self) -> str:
        return sha256_json(self.model_dump(mode="json"))


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_profile_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise ConfigError(f"{path}: circular 'extends'")
    if not path.is_file():
        raise ConfigError(f"profile file not found: {path}")
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    # A sibling file first (a folder of user profiles), else the config tree's: a profile written
    # anywhere can say `extends: production` without copying the packaged profiles next to it.
    sibling = path.parent / f"{parent}.yaml"
    parent_path = sibling if sibling.is_file() else profiles_dir() / f"{parent}.yaml"
    return deep_merge(_read_profile_file(parent_path, (*seen, path)), data)


def profiles_dir() -> Path:
    """config/profiles of the config tree in use (packaged, or $TIERGATE_HOME's)."""
    return config_path("profiles")


def resolve_profile_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.is_file():
        return candidate
    profiles = profiles_dir()
    path = profiles / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in profiles.glob("*.yaml") if p.stem != "base")
        raise ConfigError(f"unknown profile {name_or_path!r}; known: {', '.join(known)} (or a path to a YAML file)")
    return path


def load_profile(name_or_path: str = "local", overrides: dict[str, Any] | None = None) -> Profile:
    """Load a profile by name (config/profiles/NAME.yaml) or path, with optional overrides."""
    path = resolve_profile_path(name_or_path)
    data = _read_profile_file(path)
    if overrides:
        data = deep_merge(data, overrides)
    try:
        return Profile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{path}: {format_validation_error(error)}") from None
