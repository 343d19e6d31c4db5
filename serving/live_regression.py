"""The regression vectors against a live endpoint: one procedure for `tiergate regression` (Helm test,
by hand) and for the operator's canary analysis, so what decides a rollout is what a person can rerun.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from tiergate.client import EndpointMismatch, ModerationClient
from tiergate.errors import TiergateError
from tiergate.regression import Suite
from tiergate.taxonomy import Taxonomy


def connect(
    url: str,
    model: str,
    taxonomy: Taxonomy,
    *,
    protocol: Literal["http", "grpc"] = "http",
    wait_s: float = 0.0,
    poll_s: float = 2.0,
    timeout_s: float = 30.0,
    retries: int = 3,
    expect_version: str | None = None,
    **options: Any,
) -> ModerationClient:
    """A client to a ready endpoint serving the taxonomy's labels (and `expect_version`), waiting up to `wait_s`.

    Untrusted TLS or another protocol on the port fails at once: waiting cannot fix those.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client = ModerationClient(
                url,
                protocol,
                model,
                timeout_s=timeout_s,
                retries=retries,
                expected_labels=taxonomy.labels,
                **options,  # type: ignore[arg-type]
            )
            if client.ready():
                break
            client.close()
        except EndpointMismatch:
            raise
        except TiergateError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TiergateError(f"{url}: model {model} not ready after {wait_s:.0f}s")
        time.sleep(poll_s)
    if expect_version is not None and client.model_version != expect_version:
        client.close()
        raise TiergateError(f"{url} serves model version {client.model_version!r}, expected {expect_version!r}")
    return client


def run(client: ModerationClient, suites: Sequence[Suite], taxonomy: Taxonomy) -> dict[str, Any]:
    """Every suite through the live ensemble: the result `tiergate.components.evaluate.regression.run_suites` gives."""
    from tiergate.components.evaluate.regression import run_suites

    def classify(texts: list[str], contexts: list[Any]) -> tuple[Any, Any]:
        return client.arrays(texts, [str(context) for context in contexts])  # labels checked equal to the taxonomy's

    return run_suites(suites, taxonomy, classify)


def failing_vectors(result: dict[str, Any], suites: Sequence[str] | None = None) -> list[dict[str, str]]:
    """The hard vectors that failed, with suite and first failing context (the status and the CLI show them)."""
    failing = []
    for name, suite in result["suites"].items():
        if suites is not None and name not in suites:
            continue
        for vector in suite["vectors"]:
            if vector["status"] == "fail":
                context = next((check["context"] for check in vector["checks"] if not check["passed"]), "")
                failing.append({"id": vector["id"], "suite": name, "text": vector["text"], "context": context})
    return failing


def load(directory: Path | None, taxonomy: Taxonomy) -> list[Suite]:
    from tiergate.paths import project_path
    from tiergate.regression import load_suites

    return load_suites(directory or project_path("config/regression"), taxonomy)
