"""Keep a server process under watch until a stop signal, its exit or a failed health check.

`tiergate serve` and `tiergate gateway` both run their server as a child this way: SIGTERM and
SIGINT sent to the launcher's PID alone (not only a terminal's Ctrl-C to the whole group) stop the
child within a bounded time, and a health monitor that declares the server dead ends the watch.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Literal

from tiergate.serving.health import HealthReport

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Outcome:
    kind: Literal["signal", "exited", "unhealthy"]
    message: str  # one line

    @property
    def exit_code(self) -> int:
        return 0 if self.kind == "signal" else 1

    @classmethod
    def stopped(cls, interrupt: KeyboardInterrupt, name: str) -> Outcome:
        """A requested stop: SIGTERM or SIGINT (the signal's name travels in the KeyboardInterrupt)."""
        return cls("signal", f"{interrupt.args[0] if interrupt.args else 'SIGINT'}: stopping {name} ...")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    log.warning("%s received while stopping; the stop is already bounded", signal.Signals(signum).name)


@contextmanager
def signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def interrupt_on_stop_signals() -> AbstractContextManager[None]:
    """Inside: SIGTERM, like SIGINT, raises KeyboardInterrupt in the main thread."""
    return signals(_interrupt)


def shielded_from_stop_signals() -> AbstractContextManager[None]:
    """Inside: a second SIGTERM/SIGINT cannot abort a stop that is already under way (it is bounded)."""
    return signals(_already_stopping)


class Watch:
    """`on_not_live` is the HealthMonitor's callback; `wait(process)` returns why the watch ended."""

    def __init__(self, name: str):
        self.name = name
        self._unhealthy = threading.Event()
        self._failure: tuple[HealthReport, int] | None = None

    def on_not_live(self, report: HealthReport, failures: int) -> None:
        self._failure = (report, failures)
        self._unhealthy.set()

    def wait(self, process: subprocess.Popen[bytes], poll_s: float = 0.5) -> Outcome:
        try:
            while True:
                if self._unhealthy.wait(poll_s) and self._failure is not None:
                    report, count = self._failure
                    what = "got no answer (busy past the busy limit)" if report.busy else "failed"
                    return Outcome(
                        "unhealthy", f"health check {what} {count} times in a row: {report.detail}; stopping {self.name}"
                    )
                if process.poll() is not None:
                    return Outcome("exited", f"{self.name} exited with code {process.returncode}")
        except KeyboardInterrupt as interrupt:
            return Outcome.stopped(interrupt, self.name)
