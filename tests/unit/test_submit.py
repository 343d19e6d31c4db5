"""`tiergate pipeline submit` against a real HTTP server on loopback: a run is created, and every failure is one line.

Only the far end is fake (http.server in a thread answering like the KFP v2beta1 API, or not);
the client, its timeouts and the CLI's error handling are the real ones.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tiergate.errors import PipelineError
from tiergate.paths import PROJECT_ROOT
from tiergate.pipelines.runner import COMPILED
from tiergate.pipelines.submit import DEFAULT_SERVICE_ACCOUNT, Submission, check_host, parse_params, submit


class KfpStub(BaseHTTPRequestHandler):
    """Just enough of the KFP v2beta1 REST API; `mode` makes it misbehave in one chosen way."""

    mode: ClassVar[str] = "ok"
    experiments: ClassVar[list[dict[str, Any]]] = []
    requests: ClassVar[list[tuple[str, str, dict[str, str], Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"null")
        self.requests.append((method, self.path, dict(self.headers), body))
        if self.mode == "hang":
            time.sleep(5)
            return
        if self.mode in {"401", "403"}:
            self._send(int(self.mode), b'{"error":"Unauthenticated","code":16}')
        elif self.mode == "500":
            self._send(500, b'{"error":"upstream connect error or disconnect/reset before headers"}')
        elif self.mode == "garbage" and self.path.startswith("/apis/v2beta1/runs"):
            self._send(200, b"<html><body>Sign in</body></html>", "text/html")
        elif self.mode == "no-run-id" and self.path.startswith("/apis/v2beta1/runs"):
            self._send(200, json.dumps({"display_name": "x", "state": "PENDING"}).encode())
        elif method == "GET" and self.path.startswith("/apis/v2beta1/experiments"):
            self._send(200, json.dumps({"experiments": self.experiments, "total_size": len(self.experiments)}).encode())
        elif method == "POST" and self.path.startswith("/apis/v2beta1/experiments"):
            self._send(200, json.dumps({"experiment_id": "exp-new", "display_name": body.get("display_name")}).encode())
        elif method == "POST" and self.path.startswith("/apis/v2beta1/runs"):
            self._send(200, json.dumps({"run_id": "run-42", "experiment_id": body.get("experiment_id")}).encode())
        else:
            self._send(404, b'{"error":"Not Found"}')

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@pytest.fixture
def kfp_api() -> Iterator[str]:
    KfpStub.mode, KfpStub.experiments, KfpStub.requests = "ok", [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), KfpStub)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _submission(host: str, **changes: Any) -> Submission:
    fields: dict[str, Any] = {"host": host, "package": COMPILED, "run_name": "nightly", "token": "tok", "timeout_s": 5.0}
    return Submission(**{**fields, **changes})


def _runs() -> list[tuple[dict[str, str], Any]]:
    return [(headers, body) for method, path, headers, body in KfpStub.requests if method == "POST" and "/runs" in path]


def test_submit_creates_the_experiment_and_a_run_as_the_pipeline_service_account(kfp_api: str) -> None:
    run_id = submit(_submission(kfp_api, arguments={"profile": "production", "categories": "threats"}))
    assert run_id == "run-42"
    (headers, run), = _runs()
    assert headers["Authorization"] == "Bearer tok"
    assert run["display_name"] == "nightly" and run["experiment_id"] == "exp-new"
    assert run["service_account"] == DEFAULT_SERVICE_ACCOUNT == "tiergate-pipeline"
    assert run["runtime_config"]["parameters"] == {"profile": "production", "categories": "threats"}
    documents = list(yaml.safe_load_all(COMPILED.read_text()))
    assert run["pipeline_spec"] == {"pipeline_spec": documents[0], "platform_spec": documents[1]}  # secrets, node selector


def test_an_existing_experiment_is_reused(kfp_api: str) -> None:
    KfpStub.experiments = [{"experiment_id": "exp-7", "display_name": "tiergate"}]
    assert submit(_submission(kfp_api)) == "run-42"
    assert not [path for method, path, _, _ in KfpStub.requests if method == "POST" and "experiments" in path]
    (_, run), = _runs()
    assert run["experiment_id"] == "exp-7"
    lookup = next(path for method, path, _, _ in KfpStub.requests if method == "GET")
    assert "display_name" in lookup and "tiergate" in lookup


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("401", r"refused the credentials \(HTTP 401\): pass a valid token with --token or \$KFP_TOKEN"),
        ("403", r"refused the credentials \(HTTP 403\)"),
        ("500", r"answered HTTP 500 \(server error\) to GET /apis/v2beta1/experiments: .*upstream connect error"),
        ("garbage", r"answered POST /apis/v2beta1/runs with something that is not JSON: <html>"),
        ("no-run-id", r"answered without a run id \('run_id' missing\)"),
    ],
)
def test_a_bad_answer_is_one_clear_error_at_once(kfp_api: str, mode: str, message: str) -> None:
    KfpStub.mode = mode
    started = time.monotonic()
    with pytest.raises(PipelineError, match=message):
        submit(_submission(kfp_api))
    assert time.monotonic() - started < 3, "no retries on an answer that will not change"


def test_a_hanging_server_times_out(kfp_api: str) -> None:
    KfpStub.mode = "hang"
    started = time.monotonic()
    with pytest.raises(PipelineError, match=r"did not answer GET .* within 1s \(see --timeout\)"):
        submit(_submission(kfp_api, timeout_s=1.0))
    assert time.monotonic() - started < 3


def test_a_refused_connection_is_named() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PipelineError, match=r"cannot connect to http://127\.0\.0\.1:\d+: connection refused"):
        submit(_submission(f"http://127.0.0.1:{port}"))


@pytest.mark.parametrize("host", ["kfp.example.com", "ftp://kfp.example.com", "http://", "https://kfp:port/pipeline", ""])
def test_a_bad_url_is_refused_before_connecting(host: str) -> None:
    with pytest.raises(PipelineError, match=r"--host .* (is not an http\(s\) URL|has an invalid port)"):
        check_host(host)


def test_params_are_checked_against_the_run_form(kfp_api: str) -> None:
    assert parse_params(["categories=threats,spam", "counts=positives=5"]) == {
        "categories": "threats,spam",
        "counts": "positives=5",
    }
    with pytest.raises(PipelineError, match="must look like KEY=VALUE"):
        parse_params(["categories"])
    with pytest.raises(PipelineError, match=r"unknown pipeline parameter\(s\) categoris; the run form has: base_model, "):
        submit(_submission(kfp_api, arguments={"categoris": "threats"}))
    assert KfpStub.requests == [], "nothing is sent for a mistyped parameter"


def test_a_missing_package_is_named(kfp_api: str, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="not found; run `tiergate pipeline compile` first"):
        submit(_submission(kfp_api, package=tmp_path / "nope.yaml"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "KFP_TOKEN"}
    command = [sys.executable, "-m", "tiergate.cli.main", "pipeline", "submit", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, cwd=PROJECT_ROOT)


def test_the_cli_prints_one_line_and_exits_2_for_a_401(kfp_api: str) -> None:
    KfpStub.mode = "401"
    started = time.monotonic()
    result = _cli("--host", kfp_api, "--token", "expired")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "HTTP 401" in result.stderr
    assert time.monotonic() - started < 20


def test_the_cli_submits_and_prints_the_run_id(kfp_api: str) -> None:
    result = _cli("--host", kfp_api, "--param", "categories=threats", "--run-name", "cli")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "submitted run run-42 (experiment 'tiergate', service account tiergate-pipeline)"
    (headers, run), = _runs()
    assert "Authorization" not in headers and run["service_account"] == "tiergate-pipeline"
