"""The feedback store's refusals, each a `TiergateError` (the CLI prints one line and exits 2) that
the review API maps to one HTTP status: the caller can tell "fix your request" from "try again"."""

from __future__ import annotations

from tiergate.errors import InputDataError, TiergateError


class FeedbackError(TiergateError):
    """Base of the feedback store's errors."""

    status = 400


class Unauthorized(FeedbackError):
    """No token, or one the store does not know (or revoked)."""

    status = 401


class Forbidden(FeedbackError):
    """A known token without the scope the action needs."""

    status = 403


class NotFound(FeedbackError):
    status = 404


class Conflict(FeedbackError):
    """An idempotency key reused for different content, or a second review by the same reviewer."""

    status = 409


class StoreUnavailable(FeedbackError):
    """The database cannot be reached or is busy: transient, the caller may retry with the same key."""

    status = 503


def http_status(error: Exception) -> int:
    """The status the API answers an error with: 422 for malformed input, the class's own otherwise."""
    if isinstance(error, FeedbackError):
        return error.status
    if isinstance(error, InputDataError):
        return 422
    return 500
