"""The one health check: a real classification of a fixed canary text through the ensemble.

Triton's own `/v2/health/live` and `/ready` stay 200 while a killed python-backend stub makes every
inference fail (issue 15), so liveness here means "the ensemble classified the canary and returned
finite scores". `tiergate serve`, `tiergate gateway` (the pod's process, whose `/tiergate/health/*`
the kubelet probes) and the tests all run this same function.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)

CANARY_TEXT = "are we still on for coffee on friday?"
CANARY_CONTEXT = "general/message"
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def valid_model_name(name: str) -> bool:
    """Triton model names as they may appear in a URL path: no '/', no '..', no odd characters."""
    return bool(MODEL_NAME.fullmatch(name)) and ".." not in name


def base_url(url: str) -> str:
    """`host:port` or `http://host:port` -> `http://host:port` (no trailing slash)."""
    url = url.rstrip("/")
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


def canary_request() -> dict[str, Any]:
    """The KServe v2 JSON body of the canary: TEXT and CONTEXT as BYTES [1, 1], SCORES asked for as JSON."""
    return {
        "inputs": [
            {"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [CANARY_TEXT]},
            {"name": "CONTEXT", "shape": [1, 1], "datatype": "BYTES", "data": [CANARY_CONTEXT]},
        ],
        "outputs": [{"name": "SCORES", "parameters": {"binary_data": False}}],
    }


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    detail: str  # one line
    latency_s: float
    busy: bool = False  # no answer within the timeout: a queue full of real work, not (yet) a failure


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _judge(response: httpx.Response) -> tuple[bool, str]:
    if response.status_code != 200:
        try:
            message = str(response.json().get("error", response.text))
        except (ValueError, AttributeError):
            message = response.text
        return False, f"HTTP {response.status_code}: {_one_line(message, 160)}"
    try:
        outputs = json.loads(response.content)["outputs"]  # json.loads accepts NaN/Infinity; judged below
        scores = next(output["data"] for output in outputs if output.get("name") == "SCORES")
    except (ValueError, KeyError, TypeError, StopIteration):
        return False, "HTTP 200 without a SCORES output in JSON"
    if not isinstance(scores, list) or not scores:
        return False, "SCORES is empty"
    if not all(isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) for value in scores):
        return False, "SCORES holds non-finite or non-numeric values"
    return True, f"canary classified ({len(scores)} finite scores)"


def check_health(url: str, model: str, timeout_s: float, headers: dict[str, str] | None = None) -> HealthReport:
    """Classify the canary through `model` at `url`; ok only on HTTP 200 with finite SCORES. Never raises."""
    started = time.monotonic()
    if not valid_model_name(model):
        return HealthReport(False, f"invalid model name {model[:40]!r}", 0.0)
    endpoint = f"{base_url(url)}/v2/models/{model}/infer"
    try:
        response = httpx.post(endpoint, json=canary_request(), headers=headers, timeout=timeout_s)
        ok, detail = _judge(response)
    except httpx.TimeoutException:  # busy, not failed: an error answer is a failure, silence is a long queue
        return HealthReport(False, f"busy: no answer within {timeout_s:g}s", time.monotonic() - started, busy=True)
    except httpx.HTTPError as error:
        ok, detail = False, f"{type(error).__name__}: {_one_line(str(error), 160) or 'request failed'}"
    except Exception as error:  # a health check never raises; anything else is a failed check
        ok, detail = False, f"{type(error).__name__}: {_one_line(str(error), 160)}"
    return HealthReport(ok, detail, time.monotonic() - started)


class HealthState(Protocol):
    """What the gateway's `/tiergate/health/*` endpoints read."""

    @property
    def ready(self) -> bool: ...

    @property
    def live(self) -> bool: ...

    @property
    def detail(self) -> str: ...


DEFAULT_BUSY_LIMIT_S = 300.0


class HealthMonitor:
    """Runs `check_health` every `period_s` in a thread.

    A check that gets an error answer (HTTP error status, refused or reset connection, malformed or
    non-finite SCORES) is a *failure*; one that merely times out is *busy* (a long queue of real
    work: one large valid request can keep Triton busy for a minute and more). `ready` = the last
    check was ok, so a busy or failing server stops getting new traffic and its queue drains.
    `live` turns false after `failure_threshold` failures in a row, or after busy checks in a row
    for `busy_limit_s` seconds (a busy check neither counts as nor clears a failure).
    `on_not_live(report, count)` is called when live turns false (count: the checks in that run).

    Before the first check it is live but not ready (the server is still starting).
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        period_s: float,
        timeout_s: float,
        failure_threshold: int,
        busy_limit_s: float = DEFAULT_BUSY_LIMIT_S,
        headers: dict[str, str] | None = None,
        on_not_live: Callable[[HealthReport, int], None] | None = None,
        check: Callable[[], HealthReport] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if period_s <= 0 or timeout_s <= 0 or failure_threshold < 1 or busy_limit_s <= 0:
            raise ValueError("period_s, timeout_s and busy_limit_s must be > 0 and failure_threshold >= 1")
        self.period_s = period_s
        self.failure_threshold = failure_threshold
        self.busy_limit_s = busy_limit_s
        self._clock = clock
        self.on_not_live = on_not_live
        self._check = check or (lambda: check_health(url, model, timeout_s, headers))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: HealthReport | None = None
        self.consecutive_failures = 0
        self.consecutive_busy = 0
        self.busy_since: float | None = None  # when the current run of busy checks began
        self._dead = False  # on_not_live was called for the current run (called once per run)
        self.checks = 0

    @property
    def ready(self) -> bool:
        with self._lock:
            return self.last is not None and self.last.ok

    def _live(self) -> bool:
        busy_too_long = self.busy_since is not None and self._clock() - self.busy_since >= self.busy_limit_s
        return self.consecutive_failures < self.failure_threshold and not busy_too_long

    @property
    def live(self) -> bool:
        with self._lock:
            return self._live()

    @property
    def detail(self) -> str:
        with self._lock:
            if self.last is None:
                return "no health check yet"
            if self.last.ok:
                return self.last.detail
            if self.last.busy:
                busy_s = 0.0 if self.busy_since is None else self._clock() - self.busy_since
                return f"{self.consecutive_busy} busy in a row for {busy_s:.0f}s: {self.last.detail}"
            return f"{self.consecutive_failures} failed in a row: {self.last.detail}"

    def check_once(self) -> HealthReport:
        started = self._clock()
        report = self._check()
        with self._lock:
            if report.ok:
                self.consecutive_failures, self.consecutive_busy, self.busy_since = 0, 0, None
            elif report.busy:
                self.consecutive_busy += 1
                if self.busy_since is None:
                    self.busy_since = started
            else:
                self.consecutive_failures += 1
                self.consecutive_busy, self.busy_since = 0, None
            self.last, self.checks = report, self.checks + 1
            count = self.consecutive_busy if report.busy else self.consecutive_failures
            dead = not self._live()
            turned_dead, self._dead = dead and not self._dead, dead
        if report.busy:
            log.warning("health check busy (%d in a row): %s", count, report.detail)
        elif not report.ok:
            log.warning("health check failed (%d in a row): %s", count, report.detail)
        if turned_dead and self.on_not_live is not None:
            self.on_not_live(report, count)
        return report

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.check_once()
            self._stop.wait(max(0.0, self.period_s - (time.monotonic() - started)))

    def start(self) -> HealthMonitor:
        self._thread = threading.Thread(target=self._run, name="tiergate-health", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
