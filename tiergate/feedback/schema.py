"""What a submission and a review may hold, checked against the taxonomy and the profile before
anything is stored (and, for labels, by the client before anything is sent).

Everything from outside is validated here: category names (labels, predicted scores, flags) must be
the taxonomy's, the context `audience/surface` one it knows, the text within the configured cap,
the idempotency key a short token. Errors are one line and never echo a whole text back.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, ValidationError

from tiergate.errors import InputDataError
from tiergate.feedback.limits import KEY_CHARS, REPORTER_CHARS, SOURCES
from tiergate.hashing import sha256_json
from tiergate.records import Context, LabelState, quote_input, validation_summary
from tiergate.taxonomy import Taxonomy

Source = Literal["report", "override", "appeal", "uncertainty"]
KEY_PATTERN = re.compile(rf"^[A-Za-z0-9._:\-]{{1,{KEY_CHARS}}}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\t\n\r\x85\u2028\u2029]")  # an id (reporter) is one line, unlike a reason
M = TypeVar("M", bound=BaseModel)
assert set(SOURCES) == set(Source.__args__)  # type: ignore[attr-defined]


class Predicted(BaseModel):
    """What the served model said: per-category scores (0..1) and the flagged categories, by name."""

    model_config = ConfigDict(extra="forbid")

    scores: dict[str, StrictFloat] = Field(default_factory=dict)  # a number: not "0.5", not true
    flags: list[str] = Field(default_factory=list)


class Submission(BaseModel):
    """The body of `POST /api/v1/items` (see `tiergate.feedback_client` for the whole contract)."""

    model_config = ConfigDict(extra="forbid")

    text: str
    context: str
    source: Source = "report"
    predicted: Predicted | None = None
    labels: dict[str, str] = Field(default_factory=dict)  # the submitter's claim, by category name: positive|negative
    reason: str = ""
    reporter: str = ""
    idempotency_key: str | None = None


class ReviewIn(BaseModel):
    """The body of `POST /api/v1/items/{id}/reviews`: the categories the reviewer decided, by name."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str]  # category name -> positive|negative (checked by `check_labels`)


@dataclass(frozen=True)
class CheckedSubmission:
    text: str
    context: Context
    source: str
    predicted: dict[str, Any]
    claimed: dict[str, str]
    reason: str
    reporter: str
    idempotency_key: str | None

    @property
    def request_sha256(self) -> str:
        """The content's identity: a replay under the same key must carry the same content."""
        return sha256_json(
            {
                "text": self.text,
                "context": str(self.context),
                "source": self.source,
                "predicted": self.predicted,
                "claimed": self.claimed,
                "reason": self.reason,
                "reporter": self.reporter,
            }
        )


def parse_model(model: type[M], data: Any, what: str) -> M:
    """A pydantic model from untrusted JSON, or one line naming the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InputDataError(f"invalid {what}: {validation_summary(error)}") from None


def unknown_category(taxonomy: Taxonomy, name: str, where: str) -> InputDataError:
    close = difflib.get_close_matches(name, taxonomy.labels, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else " (tiergate taxonomy show lists them)"
    return InputDataError(f"{where}: {quote_input(name)} is not a category of the taxonomy{hint}")


def check_labels(taxonomy: Taxonomy, labels: Mapping[str, str] | Iterable[str], where: str = "labels") -> dict[str, str]:
    """Labels by name -> positive/negative. A plain list of names means those categories are positive."""
    pairs = labels.items() if isinstance(labels, Mapping) else ((name, LabelState.POSITIVE.value) for name in labels)
    known = set(taxonomy.labels)
    checked: dict[str, str] = {}
    for name, state in pairs:
        if not isinstance(name, str) or name not in known:
            raise unknown_category(taxonomy, str(name), where)
        value = getattr(state, "value", state)
        if value not in (LabelState.POSITIVE.value, LabelState.NEGATIVE.value):
            raise InputDataError(f"{where}: {name} is {quote_input(str(value))}; use positive or negative")
        checked[name] = value
    return dict(sorted(checked.items()))


def _utf8(value: str, field: str) -> None:
    """Refuse a lone surrogate (JSON's "\\ud800", or undecodable bytes in a CLI argument): it cannot be stored or hashed."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputDataError(f"{field} is not valid UTF-8 (it holds a lone surrogate or an undecodable byte)") from None


def _plain_text(value: str, field: str, limit: int, one_line: bool = False) -> str:
    _utf8(value, field)
    if _CONTROL.search(value) or (one_line and _LINE_BREAK.search(value)):
        raise InputDataError(f"{field} contains a control character")
    if len(value) > limit:
        raise InputDataError(f"{field} is {len(value)} characters; the limit is {limit}")
    return value.strip()


def check_text(text: str, limit: int) -> str:
    if "\x00" in text:
        raise InputDataError("text contains a NUL character")
    _utf8(text, "text")
    stripped = text.strip()
    if not stripped:
        raise InputDataError("text is empty")
    if len(stripped) > limit:
        raise InputDataError(f"text is {len(stripped)} characters; the limit is {limit}")
    return stripped


def check_key(key: str | None) -> str | None:
    if key is not None and not KEY_PATTERN.match(key):
        raise InputDataError(
            f"idempotency_key {quote_input(key)} must be 1-{KEY_CHARS} characters of letters, digits and . _ : -"
        )
    return key


def check_predicted(taxonomy: Taxonomy, predicted: Predicted | None) -> dict[str, Any]:
    if predicted is None:
        return {"scores": {}, "flags": []}
    known = set(taxonomy.labels)
    for name, score in predicted.scores.items():
        if name not in known:
            raise unknown_category(taxonomy, name, "predicted.scores")
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise InputDataError(f"predicted.scores: {name} is {score}; a score lies in 0..1")
    for name in predicted.flags:
        if name not in known:
            raise unknown_category(taxonomy, name, "predicted.flags")
    return {"scores": dict(sorted(predicted.scores.items())), "flags": sorted(set(predicted.flags))}


def check_submission(taxonomy: Taxonomy, submission: Submission, max_text_chars: int, max_reason_chars: int) -> CheckedSubmission:
    """Every field of a submission checked; the first problem is one `InputDataError` line."""
    text = check_text(submission.text, max_text_chars)
    context = Context.parse(submission.context, taxonomy.contexts.audiences, taxonomy.contexts.surfaces)
    return CheckedSubmission(
        text=text,
        context=context,
        source=submission.source,
        predicted=check_predicted(taxonomy, submission.predicted),
        claimed=check_labels(taxonomy, submission.labels),
        reason=_plain_text(submission.reason.replace("\n", " ").replace("\t", " "), "reason", max_reason_chars),
        reporter=_plain_text(submission.reporter, "reporter", REPORTER_CHARS, one_line=True),
        idempotency_key=check_key(submission.idempotency_key),
    )


def check_review(taxonomy: Taxonomy, review: ReviewIn) -> dict[str, str]:
    labels = check_labels(taxonomy, review.labels)
    if not labels:
        raise InputDataError("a review labels at least one category (the ones not named stay unknown)")
    return labels
