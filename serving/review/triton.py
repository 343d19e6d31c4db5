"""The try-it page's classifier: the live Triton ensemble through the project's `ModerationClient`.

The client is made on first use (the review service may start before Triton is ready) and kept; it
is dropped after a failure so the next request reconnects. One lock around it: tritonclient's HTTP
client is not meant to be shared between threads, and people type slower than it answers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from tiergate.client import Classification, ModerationClient, parse_url
from tiergate.errors import ClassificationError


class Classifier(Protocol):
    """What the try-it page needs of a classifier (the Triton one here; a stand-in in HTTP tests)."""

    @property
    def url(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    def classify(self, text: str, context: str) -> Classification: ...

    def close(self) -> None: ...


class TritonClassifier:
    def __init__(self, url: str, timeout_s: float, labels: Sequence[str], model: str = "tiergate"):
        parse_url(url)  # a malformed URL is refused at start, not at the first request
        self.url = url
        self.timeout_s = timeout_s
        self.labels = list(labels)
        self.model = model
        self._client: ModerationClient | None = None
        self._lock = threading.Lock()

    @property
    def model_version(self) -> str:
        return self._client.model_version if self._client is not None else ""

    def classify(self, text: str, context: str) -> Classification:
        """One text in one context; any failure is one ClassificationError line (Triton down, a refusal)."""
        with self._lock:
            try:
                if self._client is None:
                    self._client = ModerationClient(
                        self.url, model_name=self.model, timeout_s=self.timeout_s, retries=1, expected_labels=self.labels
                    )
                (result,) = self._client.classify([text], context)
                return result
            except ClassificationError:
                self._drop()
                raise

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def close(self) -> None:
        with self._lock:
            self._drop()
