"""Every error a user can cause and fix. The CLI prints them as one line and exits 2.

Anything that is not a `TiergateError` is a bug: the CLI still prints one line (the error's type
and message; `TIERGATE_DEBUG=1` shows the traceback) but exits 1, so a defect is never disguised
as a user mistake.
"""

from typing import Any


class TiergateError(Exception):
    """Base class for user-facing errors (bad config, bad input, refused artifact)."""


class ConfigError(TiergateError):
    """A config or taxonomy file is invalid; the message names the offending key."""


class LabelMismatchError(TiergateError):
    """An artifact was built for a different ordered label list than the taxonomy."""


class InputDataError(TiergateError):
    """User-supplied data (imports, records, requests) does not fit the taxonomy or schema."""


class GenerationError(TiergateError):
    """A generator could not produce data (missing key, unreachable server, ...)."""


class ParityError(TiergateError):
    """An exported model's outputs differ from the reference beyond the configured limits."""


class PromotionRefused(TiergateError):
    """The gate did not pass, or the artifacts are not the ones the gate judged."""


class PublishError(TiergateError):
    """A repository could not be published, or would overwrite a different published version."""


class GitOpsError(TiergateError):
    """The GitOps repository could not be cloned, rendered, committed or pushed."""


class ManifestError(TiergateError):
    """A Kubernetes manifest does not validate against its schema."""


class PipelineError(TiergateError):
    """A pipeline could not be compiled, run or submitted, or produced no result."""


class ServerError(TiergateError):
    """The local Triton server could not start, or stopped."""


class ClassificationError(TiergateError):
    """The inference endpoint refused a request or answered with something unexpected.

    `partial` holds the results computed before the failure (earlier chunks of a large call), in
    the caller's order: nothing the server already answered is lost.
    """

    def __init__(self, message: str, partial: list[Any] | None = None):
        super().__init__(message)
        self.partial: list[Any] = list(partial or [])


class OutputError(TiergateError):
    """A step's output folder could not be written (busy, not empty, read-only, full); the previous output is intact."""
