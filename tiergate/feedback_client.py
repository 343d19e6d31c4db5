"""`FeedbackClient`: how a service sends texts to the review queue (re-exported by `tiergate.client`).

    from tiergate.client import FeedbackClient

    with FeedbackClient("http://review.tiergate:8080", token=os.environ["TIERGATE_FEEDBACK_TOKEN"],
                        thresholds=ThresholdSet.load("thresholds.json").thresholds) as feedback:
        feedback.submit("you are a useless idiot", "general/message", predicted=result.scores,
                        labels=["harassment"], reason="user report", reporter="user-123", source="report")
        feedback.log_prediction(text, "general/message", result.scores)   # never blocks

The review service's JSON API (the contract the server implements; `serving/review/api.py` does):

- `POST /api/v1/items` — header `Authorization: Bearer <token>` (scope `submit` or `admin`); body
  `{"text": str, "context": "AUDIENCE/SURFACE", "source": "report"|"override"|"appeal"|"uncertainty",
  "predicted": {"scores": {category: 0..1}, "flags": [category]} | null,
  "labels": {category: "positive"|"negative"}, "reason": str, "reporter": str,
  "idempotency_key": "[A-Za-z0-9._:-]{1,128}"}`. Categories by name, from the taxonomy; `labels` is
  the submitter's claim (reviewers decide); the text at most `feedback.max_text_chars` characters.
  Answers `201 {"item": {...}, "created": true}` when stored now, `200 {"item": {...}, "created": false}`
  when this token already stored an item under this key with the same content (a retry, never a
  duplicate). Errors are `{"error": "<one line>"}`: 401 no, unknown or revoked token
  (`WWW-Authenticate: Bearer`), 403 the token lacks the scope, 409 the key was used for different
  content, 413 body over `feedback.max_request_bytes`, 422 malformed (not JSON, an unknown category,
  text over the cap, a bad context), 503 the store is unavailable (transient: retry with the same key).
- `POST /api/v1/items/{id}/reviews` — scope `review`; body `{"labels": {category: "positive"|"negative"}}`
  (categories not named stay unknown); `201 {"review": {...}}`, 404 no such item, 409 already reviewed.
- `GET /api/v1/items/{id}` — scope `review`; `200 {"item": {...}}`.
- `GET /api/v1/health` — no token; `200 {"status": "ok"}` once the store answers.

The client checks labels, predicted categories, the context and the text's length against the
taxonomy and profile before sending (an unknown category is an error naming it, nothing goes out),
retries transient failures (connection errors, timeouts, 429, 502-504) with backoff, always with the
same idempotency key, and never logs its token.

`log_prediction` is the uncertainty-sampling path: it decides locally (a score within
`feedback.uncertainty_margin` of a threshold, drawn at `feedback.sample_rate`) and puts the item on
a bounded queue that a background thread sends; when the queue is full the item is dropped and
counted (`stats`). `close()` flushes the queue for up to `feedback.client_close_timeout_s`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from tiergate.errors import InputDataError
from tiergate.feedback.errors import Conflict, FeedbackError, Forbidden, NotFound, StoreUnavailable, Unauthorized
from tiergate.feedback.sampling import UncertaintySampler
from tiergate.feedback.schema import check_key, check_labels, check_text
from tiergate.records import Context
from tiergate.taxonomy import Taxonomy

if TYPE_CHECKING:
    from tiergate.profiles import FeedbackSettings

log = logging.getLogger(__name__)
ITEMS_PATH = "/api/v1/items"
TRANSIENT_STATUS = {429, 502, 503, 504}
ERRORS: dict[int, type[FeedbackError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict}


class _Transient(Exception):
    """A failure worth retrying with the same key; `error` is what the caller sees if retries run out."""

    def __init__(self, error: FeedbackError):
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class FeedbackResult:
    """What the service answered: the stored item, and whether this call stored it (False: a replay)."""

    item: dict[str, Any]
    created: bool

    @property
    def id(self) -> int:
        return int(self.item["id"])


@dataclass(frozen=True)
class FeedbackStats:
    sampled: int  # predictions log_prediction put on the queue
    sent: int  # of those, stored by the service
    dropped: int  # not queued: the queue was full (or closed)
    failed: int  # refused by the service, or retries ran out
    pending: int  # still on the queue


def _base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputDataError(f"feedback URL {url!r} must look like http(s)://HOST[:PORT][/PREFIX]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InputDataError("feedback URL must not carry user info, a query or a fragment (the token goes in token=)")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise InputDataError(f"feedback URL {url!r} has a bad port") from None
    return url.strip().rstrip("/")


def _checked_scores(scores: Mapping[str, Any]) -> dict[str, float]:
    """Scores as plain floats in 0..1 (numpy's float32 included); anything else is one line, nothing sent."""
    checked = {}
    for name, value in scores.items():
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise InputDataError(f"predicted.scores: {name} is {type(value).__name__}, not a number") from None
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise InputDataError(f"predicted.scores: {name} is {score}; a score lies in 0..1")
        checked[name] = score
    return checked


def _scores_of(predicted: Any) -> dict[str, Any] | None:
    """`predicted` as the API's {"scores", "flags"}: a Classification, a mapping of scores, or the dict itself."""
    if predicted is None:
        return None
    if hasattr(predicted, "scores") and hasattr(predicted, "flags"):
        return {"scores": dict(predicted.scores), "flags": list(predicted.flags)}
    if isinstance(predicted, Mapping) and set(predicted) <= {"scores", "flags"} and "scores" in predicted:
        return {"scores": dict(predicted["scores"]), "flags": list(predicted.get("flags", []))}
    if isinstance(predicted, Mapping):
        return {"scores": dict(predicted), "flags": []}
    raise InputDataError(f"predicted must be scores by category (a mapping) or a Classification, not {type(predicted).__name__}")


class FeedbackClient:
    """Submit items to the review service; sample boundary predictions for it without blocking."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        thresholds: Mapping[str, float] | None = None,
        taxonomy: Taxonomy | None = None,
        settings: FeedbackSettings | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        from tiergate.profiles import load_profile
        from tiergate.taxonomy import load_taxonomy

        if not token or not token.strip():
            raise InputDataError("FeedbackClient needs a token with scope submit (tiergate feedback token create)")
        raw = token.strip()
        if not raw.isascii() or not raw.isprintable() or any(ch.isspace() for ch in raw):
            raise InputDataError("the feedback token must be printable ASCII without spaces, as `feedback token create` prints")
        self.taxonomy = taxonomy or load_taxonomy()
        self.settings = settings or load_profile("local").feedback
        self.url = _base_url(url)
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token.strip()}"},
            timeout=self.settings.client_timeout_s,
            transport=transport,
        )
        self._sampler: UncertaintySampler | None = None
        if thresholds is not None:
            check_labels(self.taxonomy, list(thresholds), "thresholds")
            self._sampler = UncertaintySampler(thresholds, self.settings.uncertainty_margin, self.settings.sample_rate, rng)
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=self.settings.client_queue_size)
        self._lock = threading.Lock()
        self._counts = {"sampled": 0, "sent": 0, "dropped": 0, "failed": 0}
        self._sender: threading.Thread | None = None
        self._abandon = threading.Event()  # close() ran out of time: stop after the item in flight
        self._closed = False

    def __repr__(self) -> str:
        return f"FeedbackClient({self.url!r})"  # never the token

    # --- submit ---------------------------------------------------------------------------------

    def submit(
        self,
        text: str,
        context: str,
        predicted: Any = None,
        labels: Mapping[str, str] | Iterable[str] = (),
        reason: str = "",
        reporter: str = "",
        idempotency_key: str | None = None,
        source: str = "report",
    ) -> FeedbackResult:
        """Send one item and wait for it to be stored; retries reuse one idempotency key, so a
        retry after a lost answer returns the stored item instead of storing a second."""
        if self._closed:
            raise FeedbackError("this FeedbackClient is closed; make a new one to submit")
        body = self._body(text, context, predicted, labels, reason, reporter, idempotency_key, source)
        return self._send(body)

    def _body(
        self,
        text: str,
        context: str,
        predicted: Any,
        labels: Mapping[str, str] | Iterable[str],
        reason: str,
        reporter: str,
        idempotency_key: str | None,
        source: str,
    ) -> dict[str, Any]:
        checked_labels = check_labels(self.taxonomy, [labels] if isinstance(labels, str) else labels)  # one name, not its letters
        scores = _scores_of(predicted)
        if scores is not None:
            check_labels(self.taxonomy, list(scores["scores"]), "predicted.scores")
            scores["scores"] = _checked_scores(scores["scores"])
            check_labels(self.taxonomy, scores["flags"], "predicted.flags")
        Context.parse(context, self.taxonomy.contexts.audiences, self.taxonomy.contexts.surfaces)
        check_text(text, self.settings.max_text_chars)
        return {
            "text": text,
            "context": context,
            "source": source,
            "predicted": scores,
            "labels": checked_labels,
            "reason": reason,
            "reporter": reporter,
            "idempotency_key": check_key(idempotency_key) or uuid.uuid4().hex,
        }

    def _send(self, body: dict[str, Any]) -> FeedbackResult:
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.client_retries + 1),
            wait=wait_exponential(multiplier=self.settings.client_retry_base_delay_s, max=self.settings.client_retry_max_delay_s),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._post_once(body)
        except _Transient as transient:
            raise transient.error from None
        raise AssertionError("unreachable: tenacity re-raises or returns")

    def _post_once(self, body: dict[str, Any]) -> FeedbackResult:
        try:
            response = self._http.post(ITEMS_PATH, json=body)
        except httpx.TransportError as error:
            raise _Transient(
                StoreUnavailable(f"cannot reach the review service at {self.url}: {type(error).__name__}: {error}")
            ) from None
        message = _error_line(response)
        if response.status_code in TRANSIENT_STATUS:
            raise _Transient(StoreUnavailable(f"review service {self.url} answered {response.status_code}: {message}"))
        if response.status_code in (200, 201):
            try:
                data = response.json()
                return FeedbackResult(item=dict(data["item"]), created=bool(data["created"]))
            except (ValueError, TypeError, KeyError):
                raise FeedbackError(
                    f"{self.url} answered {response.status_code} without an item: is it the review service's /api/v1?"
                ) from None
        refusal = ERRORS.get(response.status_code)
        if refusal is not None:
            raise refusal(f"review service refused the item ({response.status_code}): {message}")
        if 400 <= response.status_code < 500:
            raise InputDataError(f"review service refused the item ({response.status_code}): {message}")
        raise FeedbackError(f"review service {self.url} answered {response.status_code}: {message}")

    # --- log_prediction -------------------------------------------------------------------------

    def log_prediction(self, text: str, context: str, scores: Mapping[str, float]) -> bool:
        """Queue a boundary prediction for review, if sampled; never waits on the network.

        Returns True when the prediction was queued. A full queue drops it (counted in `stats`)."""
        if self._sampler is None:
            raise InputDataError("log_prediction needs thresholds= (the served thresholds.json's, by category)")
        near = self._sampler(scores)
        if not near:
            return False
        thresholds = self._sampler.thresholds
        flags = sorted(name for name, score in scores.items() if score >= thresholds[name])
        reason = "uncertainty: " + ", ".join(f"{name} {scores[name]:.3f} (threshold {thresholds[name]:.3f})" for name in near)
        body = {
            "text": text,
            "context": context,
            "source": "uncertainty",
            "predicted": {"scores": {name: float(score) for name, score in scores.items()}, "flags": flags},
            "labels": {},
            "reason": reason[: self.settings.max_reason_chars],
            "reporter": "",
            "idempotency_key": uuid.uuid4().hex,
        }
        with self._lock:
            if self._closed:
                self._counts["dropped"] += 1
                return False
            try:
                self._queue.put_nowait(body)
            except queue.Full:
                self._counts["dropped"] += 1
                return False
            self._counts["sampled"] += 1
            if self._sender is None:
                self._sender = threading.Thread(target=self._drain, name="tiergate-feedback-sender", daemon=True)
                self._sender.start()
        return True

    def _drain(self) -> None:
        """The sender thread: items in order until close() queues the stop mark (None)."""
        while True:
            body = self._queue.get()
            if body is None or self._abandon.is_set():
                return
            try:
                self._send(body)
                outcome = "sent"
            except Exception as error:  # the sender never dies: count the item and keep going
                log.warning("feedback: a sampled prediction was not stored: %s", error)
                outcome = "failed"
            with self._lock:
                self._counts[outcome] += 1

    @property
    def stats(self) -> FeedbackStats:
        with self._lock:
            pending = sum(1 for body in list(self._queue.queue) if body is not None)
            return FeedbackStats(pending=pending, **self._counts)

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self, timeout_s: float | None = None) -> FeedbackStats:
        """Send what is queued (for up to `timeout_s`, default from the profile), then close the
        connection. What is still queued then is abandoned and counted as `pending`."""
        timeout = self.settings.client_close_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            sender = self._sender
        if sender is not None:
            with contextlib.suppress(queue.Full):  # full: the sender is stuck; it is abandoned below
                self._queue.put(None, timeout=timeout)
            sender.join(max(0.0, deadline - time.monotonic()))
            if sender.is_alive():
                self._abandon.set()
        stats = self.stats
        if stats.pending:
            log.warning("feedback: closed with %d sampled prediction(s) unsent after %.1f s", stats.pending, timeout)
        if sender is None or not sender.is_alive():
            self._http.close()
        return stats

    def __enter__(self) -> FeedbackClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _error_line(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200] or response.reason_phrase
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return " ".join(str(data).split())[:200]
