"""Launch the compiled pipeline on a Kubeflow Pipelines API server (REST, v2beta1), with answers a user can act on.

Why not `kfp.Client`: it has no timeouts (a hanging server hangs the command), it retries a 401
into six chained tracebacks, and it prints "submitted run None" for a reply without a run id.
This module speaks the same two calls the client makes — find or create the experiment, create
the run with the pipeline spec inline — over httpx with a connect and a read timeout, and turns
every failure into one PipelineError line: bad URL, refused connection, timeout, credentials
(401/403), missing API (404), server error (5xx), a reply that is not JSON or has no run id.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from tiergate.errors import PipelineError

API = "/apis/v2beta1"
DEFAULT_SERVICE_ACCOUNT = "tiergate-pipeline"  # manifests/kfp/rbac.yaml
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
EQUALS = 1  # the KFP filter operation, as kfp.Client sends it


@dataclass(frozen=True)
class Submission:
    """What to launch, where, and as whom."""

    host: str
    package: Path
    experiment: str = "tiergate"
    run_name: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    token: str | None = None
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    namespace: str | None = None
    timeout_s: float = READ_TIMEOUT_S


def check_host(host: str) -> str:
    """The API base URL without a trailing slash; a bad one is refused before any connection."""
    try:
        parts = urlsplit(host.strip())
    except ValueError as error:  # e.g. an unclosed IPv6 bracket
        raise PipelineError(f"--host {host!r} is not a valid URL ({error})") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise PipelineError(f"--host {host!r} is not an http(s) URL (e.g. https://kfp.example.com/pipeline)")
    try:
        parts.port  # noqa: B018 (raises on a non-numeric port)
    except ValueError:
        raise PipelineError(f"--host {host!r} has an invalid port") from None
    return host.strip().rstrip("/")


def pipeline_spec(package: Path) -> dict[str, Any]:
    """The compiled YAML as the API wants it: the pipeline spec, plus the platform spec when there is one."""
    package = Path(package)
    if not package.is_file():
        raise PipelineError(f"{package} not found; run `tiergate pipeline compile` first")
    try:
        documents = [doc for doc in yaml.safe_load_all(package.read_text(encoding="utf-8")) if doc]
    except yaml.YAMLError as error:
        raise PipelineError(f"{package} is not valid YAML: {error}") from None
    if not documents or not isinstance(documents[0], dict) or "root" not in documents[0]:
        raise PipelineError(f"{package} is not a compiled KFP pipeline (no pipeline spec)")
    if len(documents) == 1:
        return documents[0]
    platform: dict[str, Any] = {}
    for document in documents[1:]:
        platform.update(document)
    return {"pipeline_spec": documents[0], "platform_spec": platform}


def parse_params(items: list[str]) -> dict[str, str]:
    """--param KEY=VALUE pairs; a malformed one is refused by name."""
    arguments: dict[str, str] = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise PipelineError(f"--param {item!r} must look like KEY=VALUE")
        arguments[key.strip()] = value
    return arguments


def check_arguments(spec: dict[str, Any], arguments: dict[str, Any]) -> None:
    """Refuse a parameter the run form does not have, before anything is sent (the server's 400 is opaque)."""
    pipeline = spec.get("pipeline_spec", spec)
    known = sorted(pipeline.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise PipelineError(f"unknown pipeline parameter(s) {', '.join(unknown)}; the run form has: {', '.join(known)}")


class KfpApi:
    """The two KFP REST calls tiergate needs, each failure one PipelineError line."""

    def __init__(self, host: str, token: str | None = None, timeout_s: float = READ_TIMEOUT_S):
        self.host = check_host(host)
        # httpx logs every request at INFO; with the CLI's INFO logging a failure would print two lines.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
        self.client = httpx.Client(base_url=self.host, headers=headers, timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> KfpApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One request; the parsed JSON object, or a PipelineError naming what went wrong and what to do."""
        where = f"{method} {self.host}{path}"
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.ConnectTimeout:
            raise PipelineError(
                f"no connection to {self.host} within {self.client.timeout.connect:.0f}s: is --host right?"
            ) from None
        except httpx.TimeoutException:
            raise PipelineError(
                f"{self.host} did not answer {where} within {self.client.timeout.read:.0f}s (see --timeout)"
            ) from None
        except httpx.ConnectError as error:
            raise PipelineError(f"cannot connect to {self.host}: {_reason(error)}") from None
        except httpx.HTTPError as error:
            raise PipelineError(f"{where} failed: {_reason(error)}") from None
        status = response.status_code
        if status in {401, 403}:
            raise PipelineError(
                f"{self.host} refused the credentials (HTTP {status}): pass a valid token with --token or $KFP_TOKEN"
            )
        if status == 404:
            raise PipelineError(
                f"no KFP v2 API at {self.host} (HTTP 404 for {path}); --host is the API endpoint, e.g. .../pipeline"
            )
        if 300 <= status < 400:
            raise PipelineError(
                f"{self.host} redirects (HTTP {status} to {response.headers.get('location', '?')}): a login page? pass --token"
            )
        if status >= 400:
            kind = "server error" if status >= 500 else "request refused"
            raise PipelineError(f"{self.host} answered HTTP {status} ({kind}) to {method} {path}: {_snippet(response)}")
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PipelineError(
                f"{self.host} answered {method} {path} with something that is not JSON: {_snippet(response)}"
            ) from None
        if not isinstance(payload, dict):
            raise PipelineError(f"{self.host} answered {method} {path} with JSON that is not an object: {_snippet(response)}")
        return payload

    def experiment_id(self, name: str, namespace: str | None) -> str:
        """The id of the experiment called `name`, created when it does not exist yet."""
        query: dict[str, str] = {
            "filter": json.dumps({"predicates": [{"operation": EQUALS, "key": "display_name", "stringValue": name}]})
        }
        if namespace:
            query["namespace"] = namespace
        found = self.call("GET", f"{API}/experiments", params=query).get("experiments") or []
        if found:
            return _id(found[0], "experiment_id", self.host, "experiment")
        body = {"display_name": name, **({"namespace": namespace} if namespace else {})}
        return _id(self.call("POST", f"{API}/experiments", json=body), "experiment_id", self.host, "experiment")

    def create_run(self, body: dict[str, Any]) -> str:
        return _id(self.call("POST", f"{API}/runs", json=body), "run_id", self.host, "run")


def submit(submission: Submission) -> str:
    """Create the experiment if needed and launch one run; returns the run id."""
    spec = pipeline_spec(submission.package)
    check_arguments(spec, submission.arguments)
    with KfpApi(submission.host, submission.token, submission.timeout_s) as api:
        experiment = api.experiment_id(submission.experiment, submission.namespace)
        body = {
            "display_name": submission.run_name or f"{submission.package.stem} {_now()}",
            "experiment_id": experiment,
            "pipeline_spec": spec,
            "runtime_config": {"parameters": dict(submission.arguments)},
            "service_account": submission.service_account,
        }
        return api.create_run(body)


def _id(payload: dict[str, Any], key: str, host: str, what: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PipelineError(f"{host} answered without a {what} id ({key!r} missing): is this a KFP v2 API server?")
    return value


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    if "refused" in text.lower():
        return "connection refused (is the API server running, and the port right?)"
    return text.splitlines()[-1][:200]


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return (text[:160] + "…") if len(text) > 160 else (text or "(empty body)")


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H-%M-%S")
