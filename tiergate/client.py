"""`ModerationClient`: call the tiergate Triton ensemble from a service (HTTP or gRPC).

Typed results with label names, batching of large inputs, timeouts, retries on transient
errors, readiness checks, and a metadata check that the served labels are the taxonomy's.
The gRPC client is imported only when asked for: `tritonclient.grpc` and the KServe SDK
register the same protobuf package and cannot share a process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tiergate.errors import ClassificationError, LabelMismatchError
from tiergate.labels import check_labels
from tiergate.triton_params import json_parameter, string_parameters

log = logging.getLogger(__name__)
Protocol = Literal["http", "grpc"]
OUTPUTS = ("SCORES", "FLAGS", "MAX_TIER", "TRUNCATED")


@dataclass(frozen=True)
class Classification:
    text: str
    context: str
    scores: dict[str, float]
    flags: list[str]
    max_tier: int  # most severe flagged tier (1 = most severe); 0 when nothing is flagged
    truncated: bool  # the text was longer than the model's max length and was cut

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "context": self.context,
            "flags": self.flags,
            "max_tier": self.max_tier,
            "truncated": self.truncated,
            "scores": self.scores,
        }


TRANSIENT_STATUS = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "502", "503", "504"}
TRANSIENT_TEXT = ("failed to connect", "connection refused", "unavailable", "timed out", "connection reset")


def is_transient(error: Any) -> bool:
    """Worth retrying: the server is unreachable or overloaded, not refusing the request itself."""
    status = str(error.status() or "")
    return status in TRANSIENT_STATUS or any(text in str(error.message() or "").lower() for text in TRANSIENT_TEXT)


def to_arrays(results: Sequence[Classification], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and flags of classified texts as [texts, labels] arrays in `labels` order."""
    scores = np.array([[item.scores[name] for name in labels] for item in results], dtype=np.float32)
    flags = np.array([[name in item.flags for name in labels] for item in results], dtype=bool)
    return scores, flags


class ModerationClient:
    def __init__(
        self,
        url: str,
        protocol: Protocol = "http",
        model_name: str = "tiergate",
        timeout_s: float = 30.0,
        retries: int = 3,
        retry_delay_s: float = 0.5,
        expected_labels: Sequence[str] | None = None,
    ):
        self.url = url.removeprefix("http://").removeprefix("https://")
        self.protocol = protocol
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        if protocol == "http":
            import tritonclient.http as module
            from tritonclient.utils import InferenceServerException

            self._client: Any = module.InferenceServerClient(self.url, connection_timeout=timeout_s, network_timeout=timeout_s)
        elif protocol == "grpc":
            import tritonclient.grpc as module  # type: ignore[no-redef]
            from tritonclient.utils import InferenceServerException

            self._client = module.InferenceServerClient(self.url)
        else:
            raise ClassificationError(f"unknown protocol {protocol!r}; use http or grpc")
        self._module = module
        self._error = InferenceServerException
        self.labels, self.max_batch_size, self.contexts, self.model_version = self._read_config()
        if expected_labels is not None:
            check_labels(self.labels, expected_labels, f"served model {model_name}")

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Retry transient failures (connection refused, unavailable); bad input fails at once."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                return function(*args, **kwargs)
            except self._error as error:
                if not is_transient(error):
                    raise ClassificationError(f"{what}: {error.message()}") from None
                last = error
            except (ConnectionError, OSError) as error:
                last = error
            if attempt < self.retries:
                time.sleep(self.retry_delay_s * (2**attempt))
        raise ClassificationError(f"{what}: server not reachable at {self.url} after {self.retries + 1} attempts ({last})")

    def _read_config(self) -> tuple[list[str], int, dict[str, list[str]], str]:
        config = self._call("model config", self._client.get_model_config, self.model_name)
        if self.protocol == "grpc":
            from google.protobuf.json_format import MessageToDict

            config = MessageToDict(config.config, preserving_proto_field_name=True)
        parameters = string_parameters(config)
        if "labels" not in parameters:
            raise LabelMismatchError(f"model {self.model_name} publishes no label list; not a tiergate ensemble")
        return (
            json_parameter(parameters, "labels"),
            int(config.get("max_batch_size", 1)),
            json_parameter(parameters, "contexts", "{}"),
            parameters.get("model_version", ""),
        )

    def ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model_name))
        except Exception:
            return False

    def _infer(self, texts: Sequence[str | bytes], contexts: Sequence[str]) -> dict[str, np.ndarray]:
        module = self._module
        text_array = np.array([[t.encode("utf-8") if isinstance(t, str) else t] for t in texts], dtype=object)
        context_array = np.array([[c.encode("utf-8")] for c in contexts], dtype=object)
        inputs = [
            module.InferInput("TEXT", list(text_array.shape), "BYTES"),
            module.InferInput("CONTEXT", list(context_array.shape), "BYTES"),
        ]
        inputs[0].set_data_from_numpy(text_array)
        inputs[1].set_data_from_numpy(context_array)
        outputs = [module.InferRequestedOutput(name) for name in OUTPUTS]
        kwargs: dict[str, Any] = {"outputs": outputs}
        if self.protocol == "grpc":  # http: the network timeout is set on the client itself
            kwargs["client_timeout"] = self.timeout_s
        result = self._call("classify", self._client.infer, self.model_name, inputs, **kwargs)
        return {name: result.as_numpy(name) for name in OUTPUTS}

    def classify(
        self, texts: str | bytes | Sequence[str | bytes], context: str | Sequence[str] = "general/message"
    ) -> list[Classification]:
        """Classify one text or many; `context` is one AUDIENCE/SURFACE for all, or one per text."""
        items = [texts] if isinstance(texts, str | bytes) else list(texts)
        contexts = [context] * len(items) if isinstance(context, str) else list(context)
        if len(contexts) != len(items):
            raise ClassificationError(f"{len(items)} texts but {len(contexts)} contexts")
        results: list[Classification] = []
        for start in range(0, len(items), self.max_batch_size):
            chunk, chunk_contexts = items[start : start + self.max_batch_size], contexts[start : start + self.max_batch_size]
            arrays = self._infer(chunk, chunk_contexts)
            for row, (text, ctx) in enumerate(zip(chunk, chunk_contexts, strict=True)):
                scores = {name: round(float(value), 6) for name, value in zip(self.labels, arrays["SCORES"][row], strict=True)}
                flags = [name for name, flag in zip(self.labels, arrays["FLAGS"][row], strict=True) if flag]
                results.append(
                    Classification(
                        text if isinstance(text, str) else text.decode("utf-8", "replace"),
                        ctx,
                        scores,
                        flags,
                        int(arrays["MAX_TIER"][row].reshape(-1)[0]),
                        bool(arrays["TRUNCATED"][row].reshape(-1)[0]),
                    )
                )
        return results

    def arrays(self, texts: Sequence[str | bytes], contexts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Scores and flags as [texts, labels] arrays in the served label order (for vector checks, parity)."""
        return to_arrays(self.classify(texts, contexts), self.labels)

    def close(self) -> None:
        self._client.close()
