"""Line-based progress that reads well in a terminal and in KFP pod logs alike."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("tiergate")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


class Progress:
    """Logs `label: done/total (pct%)` at most every `every_s` seconds, and always at the end."""

    def __init__(self, label: str, every_s: float = 5.0):
        self.label = label
        self.every_s = every_s
        self._last = 0.0
        self._started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < self.every_s:
            return
        self._last = now
        percent = 100.0 * done / total if total else 100.0
        log.info("%s: %d/%d (%.0f%%) %.1fs", self.label, done, total, percent, now - self._started)
