"""The gateway's rules and the health check, against fake upstreams (no Triton; seconds)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from tiergate.errors import ServerError
from tiergate.serving.gateway import ADMIN_HEADER, Gateway, GatewayConfig, GatewayServer, access
from tiergate.serving.health import HealthMonitor, HealthReport, canary_request, check_health
from tiergate.serving.server import free_port

KEY = "s3cret-admin-key"


@dataclass
class FakeHealth:
    ready: bool = True
    live: bool = True
    detail: str = "fine"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v2", "public"),
        ("GET", "/v2/health/live", "public"),
        ("GET", "/v2/health/ready", "public"),
        ("GET", "/v2/models/tiergate", "public"),
        ("GET", "/v2/models/tiergate/ready", "public"),
        ("GET", "/v2/models/tiergate/config", "public"),
        ("POST", "/v2/models/tiergate/infer", "public"),
        ("POST", "/v2/models/tiergate/versions/1/infer", "public"),
        ("GET", "/v2/models/tiergate/versions/1/ready", "public"),
        ("POST", "/v2/health/ready", "admin"),
        ("GET", "/v2/models/tiergate/infer", "admin"),
        ("POST", "/v2/models/tiergate/generate", "admin"),
        ("GET", "/v2/models/tiergate/stats", "admin"),
        ("POST", "/v2/models/classifier/infer", "admin"),
        ("POST", "/v2/models/tokenizer/infer", "admin"),
        ("GET", "/v2/models/postprocess/config", "admin"),
        ("POST", "/v2/repository/index", "admin"),
        ("POST", "/v2/repository/models/tiergate/unload", "admin"),
        ("GET", "/v2/logging", "admin"),
        ("GET", "/v2/trace/setting", "admin"),
        ("GET", "/v2/systemsharedmemory/status", "admin"),
        ("GET", "/v2/models/stats", "admin"),
        ("GET", "/metrics", "admin"),
    ],
)
def test_access_rules(method: str, path: str, expected: str) -> None:
    assert access(method, tuple(path.split("/")[1:]), "tiergate") == expected


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    if request.path.endswith("/bad/infer"):
        return web.json_response({"error": "upstream says no"}, status=400)
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path,
            "bytes": len(body),
            "admin": request.headers.get(ADMIN_HEADER),
            "host": request.headers.get("Host"),
        },
        headers={"X-Upstream": "yes"},
    )


Scenario = Callable[[aiohttp.ClientSession, URL, list[Any]], Awaitable[None]]


def run_gateway(
    scenario: Scenario, *, admin_key: str | None = KEY, cap: int = 1024, upstream_up: bool = True, **config: Any
) -> None:
    async def main() -> None:
        upstream_app = web.Application()
        upstream_app.router.add_route("*", "/{tail:.*}", _echo)
        async with TestServer(upstream_app) as upstream:
            target = f"127.0.0.1:{upstream.port if upstream_up else free_port()}"
            gateway = Gateway(GatewayConfig(target, "tiergate", cap, admin_key, **config), FakeHealth(ready=False))
            async with TestServer(gateway.app()) as front, aiohttp.ClientSession() as client:
                await scenario(client, URL(f"http://127.0.0.1:{front.port}"), [gateway])

    asyncio.run(main())


def test_ensemble_is_proxied_and_inner_models_need_the_key() -> None:
    async def scenario(client: aiohttp.ClientSession, base: URL, _: list[Any]) -> None:
        async with client.post(base / "v2/models/tiergate/infer", data=b"x" * 100) as response:
            assert response.status == 200 and response.headers["X-Upstream"] == "yes"
            echoed = await response.json()
            assert echoed["path"] == "/v2/models/tiergate/infer" and echoed["bytes"] == 100 and echoed["admin"] is None
        for method, path in (("POST", "v2/models/classifier/infer"), ("POST", "v2/repository/index"), ("GET", "v2/logging")):
            for headers in ({}, {ADMIN_HEADER: "wrong"}, {ADMIN_HEADER: ""}):
                async with client.request(method, base / path, headers=headers) as response:
                    assert response.status == 403, (path, headers)
                    text = await response.text()
                    assert "\n" not in text.strip() and KEY not in text
                    if "models/" in path:  # another model: named as not public, no hint at credentials
                        assert "'classifier' is not the public model; the public model here is 'tiergate'" in text
                    else:
                        assert "needs the tiergate-admin header" in text
            async with client.request(method, base / path, headers={ADMIN_HEADER: KEY}) as response:
                assert response.status == 200
                assert (await response.json())["admin"] == KEY  # forwarded: Triton's restricted APIs check it too
        async with client.post(base / "v2/models/tiergate/infer", headers={ADMIN_HEADER: "wrong"}) as response:
            assert response.status == 200 and (await response.json())["admin"] is None  # a wrong key never travels on

    run_gateway(scenario)


def test_without_an_admin_key_admin_routes_are_closed() -> None:
    async def scenario(client: aiohttp.ClientSession, base: URL, _: list[Any]) -> None:
        for given in ("", "None", KEY):
            async with client.get(base / "v2/logging", headers={ADMIN_HEADER: given}) as response:
                assert response.status == 403

    run_gateway(scenario, admin_key=None)


def test_body_cap_by_length_and_by_chunks() -> None:
    async def chunks(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"y" * 256

    async def scenario(client: aiohttp.ClientSession, base: URL, _: list[Any]) -> None:
        infer = base / "v2/models/tiergate/infer"
        async with client.post(infer, data=b"x" * 1024) as response:
            assert response.status == 200  # exactly the cap
        async with client.post(infer, data=b"x" * 1025) as response:
            assert response.status == 413 and "over the limit of 1024" in (await response.json())["error"]
        async with client.post(infer, data=chunks(3)) as response:  # chunked, under the cap
            assert response.status == 200 and (await response.json())["bytes"] == 768
        async with client.post(infer, data=chunks(40)) as response:  # chunked, no Content-Length
            assert response.status == 413
        async with client.post(infer, data=b"{}", headers={"Content-Encoding": "gzip"}) as response:
            assert response.status == 415
        async with client.get(base / "v2/health/ready") as response:
            assert response.status == 200  # still answering

    run_gateway(scenario)


def test_odd_paths_and_model_names_are_refused_before_use() -> None:
    async def scenario(client: aiohttp.ClientSession, base: URL, _: list[Any]) -> None:
        for raw in (
            "/v2/models/..%2Frepository/index",
            "/v2/models/tiergate%2F..%2Fclassifier/infer",
            "/v2/models/../models/classifier/infer",
            "/v2//models/tiergate/infer",
            "/v2/models/tier%00gate/infer",
            "/v2/models/tiergate/infer/",
            "/",
        ):
            async with client.post(URL(f"{base}{raw}", encoded=True)) as response:
                assert response.status == 400, raw
                assert "invalid path" in (await response.json())["error"]

    run_gateway(scenario)


def test_upstream_errors_pass_through_and_unreachable_is_502() -> None:
    async def scenario(client: aiohttp.ClientSession, base: URL, _: list[Any]) -> None:
        async with client.post(base / "v2/models/bad/infer", headers={ADMIN_HEADER: KEY}) as response:
            assert response.status == 400 and (await response.json()) == {"error": "upstream says no"}

    run_gateway(scenario)

    async def unreachable(client: aiohttp.ClientSession, base: URL, _: list[Any]) -> None:
        async with client.post(base / "v2/models/tiergate/infer", data=b"{}") as response:
            assert response.status == 502
            assert "unreachable" in (await response.json())["error"]

    run_gateway(unreachable, upstream_up=False)


def test_probe_endpoints_follow_the_health_state() -> None:
    async def scenario(client: aiohttp.ClientSession, base: URL, gateways: list[Any]) -> None:
        health: FakeHealth = gateways[0].health
        async with client.get(base / "tiergate/health/ready") as response:
            assert response.status == 503
        async with client.get(base / "tiergate/health/live") as response:
            assert response.status == 200
        health.ready, health.live = True, False
        async with client.get(base / "tiergate/health/ready") as response:
            assert response.status == 200
        async with client.get(base / "tiergate/health/live") as response:
            assert response.status == 503 and (await response.json())["detail"] == "fine"

    run_gateway(scenario)


def test_every_content_encoding_is_checked_head_is_public_and_an_unknown_model_is_named() -> None:
    async def scenario(client: aiohttp.ClientSession, base: URL, _: list[Any]) -> None:
        infer = base / "v2/models/tiergate/infer"
        for values in (["identity", "gzip"], ["gzip", "identity"], ["identity, gzip"], ["br"]):
            headers = [("Content-Encoding", value) for value in values]
            async with client.post(infer, data=b"{}", headers=headers) as response:
                assert response.status == 415, values
        async with client.post(infer, data=b"{}", headers=[("Content-Encoding", "identity")] * 2) as response:
            assert response.status == 200
        for path in ("v2/health/ready", "v2/models/tiergate/ready", "v2"):
            async with client.head(base / path) as response:
                assert response.status == 200, path
        async with client.head(base / "v2/logging") as response:
            assert response.status == 403
        async with client.post(base / "v2/models/nosuch/infer", data=b"{}") as response:
            error = (await response.json())["error"]
            assert response.status == 403 and "'nosuch' is not the public model; the public model here is 'tiergate'" in error
            assert "header" not in error and "Bearer" not in error

    run_gateway(scenario)


async def _slow_sender(port: int, declared: int, sent: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw client that declares a body, sends part of it and stalls."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST /v2/models/tiergate/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode() + sent)
    await writer.drain()
    return reader, writer


def test_a_stalled_body_gets_408_and_in_flight_requests_are_capped() -> None:
    async def scenario(client: aiohttp.ClientSession, base: URL, _: list[Any]) -> None:
        port = int(base.port or 0)
        stalled = [await _slow_sender(port, 1000, b"x" * 10) for _ in range(2)]
        await asyncio.sleep(0.2)
        async with client.post(base / "v2/models/tiergate/infer", data=b"{}") as response:  # over the cap of 2
            assert response.status == 503 and "2 requests in flight" in (await response.json())["error"]
        async with client.get(base / "tiergate/health/live") as response:
            assert response.status == 200  # probes are never capped
        started = asyncio.get_running_loop().time()
        for reader, writer in stalled:
            answer = await asyncio.wait_for(reader.read(4096), 5)
            assert answer.startswith(b"HTTP/1.1 408") and b"not received within 0.5s" in answer
            writer.close()
        assert asyncio.get_running_loop().time() - started < 2
        async with client.post(base / "v2/models/tiergate/infer", data=b"{}") as response:  # the slots are free again
            assert response.status == 200

    run_gateway(scenario, body_timeout_s=0.5, max_connections=2)


def test_stop_answers_the_request_in_flight_then_ends_cleanly(capfd: pytest.CaptureFixture[str]) -> None:
    """Stopping closes the listener first, lets the slow request finish, and leaves no asyncio debris."""
    slow = ThreadingHTTPServer(("127.0.0.1", 0), FakeTriton)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    FakeTriton.seen, FakeTriton.delay_s, FakeTriton.answer = [], 1.5, (200, _scores("0.5"))
    try:
        config = GatewayConfig(f"127.0.0.1:{slow.server_address[1]}", "tiergate")
        server = GatewayServer(config, "127.0.0.1", 0, drain_timeout_s=10).start()
        url = f"http://127.0.0.1:{server.port}"
        answers: list[int] = []
        request = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{url}/v2/models/tiergate/infer", json=canary_request()).status_code)
        )
        request.start()
        time.sleep(0.5)  # in flight at the upstream
        server.stop()
        request.join(10)
        assert answers == [200]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/v2/health/ready")  # no longer listening
    finally:
        FakeTriton.delay_s = 0.0
        slow.shutdown()
        slow.server_close()
    captured = capfd.readouterr()
    for noise in ("Traceback", "Task was destroyed", "Event loop is closed"):
        assert noise not in captured.out + captured.err


def test_gateway_server_refuses_a_port_in_use() -> None:
    config = GatewayConfig("127.0.0.1:9", "tiergate")
    with GatewayServer(config, "127.0.0.1", 0) as first, pytest.raises(ServerError, match=r"cannot listen on 127\.0\.0\.1"):
        GatewayServer(config, "127.0.0.1", first.port).start()
    with pytest.raises(ServerError, match="invalid model name"):
        GatewayConfig("127.0.0.1:9", "../classifier")


# --- the health check against a fake KServe v2 endpoint -------------------------------------------------


class FakeTriton(BaseHTTPRequestHandler):
    answer: ClassVar[tuple[int, bytes]] = (200, b"")
    seen: ClassVar[list[dict[str, Any]]] = []
    delay_s: ClassVar[float] = 0.0  # > 0: a long queue (the answer comes, but late)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        FakeTriton.seen.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
        time.sleep(FakeTriton.delay_s)
        status, body = FakeTriton.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_triton() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTriton)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _scores(values: str) -> bytes:
    return f'{{"outputs": [{{"name": "SCORES", "datatype": "FP32", "shape": [1, 3], "data": [{values}]}}]}}'.encode()


@pytest.mark.parametrize(
    ("status", "body", "ok", "detail"),
    [
        (200, _scores("0.1, 0.2, 0.9"), True, "canary classified (3 finite scores)"),
        (200, _scores("0.1, NaN, 0.9"), False, "non-finite"),
        (200, _scores("0.1, Infinity, 0.9"), False, "non-finite"),
        (200, _scores(""), False, "SCORES is empty"),
        (200, b'{"outputs": []}', False, "without a SCORES output"),
        (200, b"not json", False, "without a SCORES output"),
        (500, b'{"error": "Stub process \'classifier_0_0\' is not healthy."}', False, "HTTP 500: Stub process"),
        (400, b"x" * 5000, False, "HTTP 400: xxx"),
    ],
)
def test_check_health_judges_the_answer(fake_triton: str, status: int, body: bytes, ok: bool, detail: str) -> None:
    FakeTriton.answer, FakeTriton.seen = (status, body), []
    report = check_health(fake_triton, "tiergate", timeout_s=5)
    assert report.ok is ok and detail in report.detail and "\n" not in report.detail and len(report.detail) <= 200
    assert FakeTriton.seen == [{"path": "/v2/models/tiergate/infer", "body": canary_request()}]


def test_a_slow_upstream_is_busy_and_stays_live_an_error_answer_fails(fake_triton: str) -> None:
    """Overload is not death: a canary that times out is busy (not ready, live); a 500 is a failure (not live)."""
    FakeTriton.seen, FakeTriton.delay_s = [], 0.6
    FakeTriton.answer = (200, _scores("0.1, 0.2"))
    died: list[int] = []
    monitor = HealthMonitor(
        fake_triton,
        "tiergate",
        period_s=0.1,
        timeout_s=0.2,
        failure_threshold=2,
        busy_limit_s=60,
        on_not_live=lambda report, count: died.append(count),
    )
    try:
        for _ in range(4):  # four unanswered canaries in a row: busy, twice the failure threshold
            report = monitor.check_once()
            assert report.busy and not report.ok and "busy: no answer within 0.2s" in report.detail
            assert not monitor.ready and monitor.live
        assert died == [] and monitor.consecutive_failures == 0 and "4 busy in a row" in monitor.detail
        FakeTriton.delay_s = 0.0
        assert monitor.check_once().ok and monitor.ready and monitor.live
        FakeTriton.answer = (500, b'{"error": "Stub process \'classifier_0_0\' is not healthy."}')
        first = monitor.check_once()
        assert not first.ok and not first.busy and monitor.live and not monitor.ready
        monitor.check_once()
        assert not monitor.live and died == [2] and "2 failed in a row: HTTP 500: Stub process" in monitor.detail
    finally:
        FakeTriton.delay_s = 0.0


def test_busy_checks_end_liveness_only_after_the_busy_limit() -> None:
    now = [0.0]
    answers = iter(["busy", "busy", "fail", "busy", "busy", "busy", "busy", "ok"])
    called: list[tuple[bool, int]] = []

    def check() -> HealthReport:
        answer = next(answers)
        now[0] += 10.0  # each check: 10 s on the fake clock
        return HealthReport(answer == "ok", answer, 5.0, busy=answer == "busy")

    monitor = HealthMonitor(
        "unused",
        "tiergate",
        period_s=1,
        timeout_s=1,
        failure_threshold=3,
        busy_limit_s=30,
        on_not_live=lambda report, count: called.append((report.busy, count)),
        check=check,
        clock=lambda: now[0],
    )
    states = []
    for _ in range(8):
        monitor.check_once()
        states.append((monitor.ready, monitor.live))
    # busy runs from the start of its first check: 10, 20 s live; a failure breaks the run (1 failure < 3);
    # then busy for 10, 20, 30 s: not live at the busy limit; ok restores both
    assert states == [
        (False, True),
        (False, True),
        (False, True),
        (False, True),
        (False, True),
        (False, False),
        (False, False),
        (True, True),
    ]
    assert called == [(True, 3)]


def test_check_health_never_raises() -> None:
    report = check_health(f"127.0.0.1:{free_port()}", "tiergate", timeout_s=2)
    assert not report.ok and "ConnectError" in report.detail
    assert not check_health("127.0.0.1:1", "../x", timeout_s=1).ok
    assert not check_health("http://[::bad", "tiergate", timeout_s=1).ok


def test_monitor_counts_failures_and_calls_back_once() -> None:
    answers = iter([True, False, False, True, False, False, False, False, True])
    called: list[int] = []
    monitor = HealthMonitor(
        "unused",
        "tiergate",
        period_s=1,
        timeout_s=1,
        failure_threshold=3,
        on_not_live=lambda report, failures: called.append(failures),
        check=lambda: HealthReport(next(answers), "x", 0.0),
    )
    assert monitor.live and not monitor.ready  # starting: live, not yet ready
    states = []
    for _ in range(9):
        monitor.check_once()
        states.append((monitor.ready, monitor.live))
    assert states == [
        (True, True),
        (False, True),
        (False, True),
        (True, True),
        (False, True),
        (False, True),
        (False, False),
        (False, False),
        (True, True),
    ]
    assert called == [3]


def test_monitor_thread_runs_every_period() -> None:
    monitor = HealthMonitor(
        "unused", "tiergate", period_s=0.05, timeout_s=1, failure_threshold=2, check=lambda: HealthReport(False, "down", 0.0)
    )
    died = threading.Event()
    monitor.on_not_live = lambda report, failures: died.set()
    monitor.start()
    try:
        assert died.wait(5)
        assert not monitor.live and " failed in a row: down" in monitor.detail and monitor.checks >= 2
    finally:
        monitor.stop()


# --- `tiergate gateway` with a stand-in server as its child ----------------------------------------------

FAKE_SERVER = """
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, broken = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.send(200 if self.path in ("/v2/health/ready", "/v2/logging") else 404, b"{}")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if b"slow" in body:
            time.sleep(2)
        if os.path.exists(broken):
            self.send(500, b'{"error": "Stub process is not healthy."}')
        else:
            scores = {"outputs": [{"name": "SCORES", "datatype": "FP32", "shape": [1, 2], "data": [0.1, 0.2]}]}
            self.send(200, json.dumps(scores).encode())

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def _gateway_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tiergate.cli.main", "gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _child_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_gateway_cli_refuses_an_unset_admin_key_variable_and_a_dead_child() -> None:
    env = {name: value for name, value in os.environ.items() if name != "TIERGATE_TEST_NO_SUCH_KEY"}
    unset = subprocess.run(
        [sys.executable, "-m", "tiergate.cli.main", "gateway", "--admin-key-env", "TIERGATE_TEST_NO_SUCH_KEY", "--", "true"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert unset.returncode == 2 and unset.stderr.strip().count("\n") == 0
    assert "error: --admin-key-env TIERGATE_TEST_NO_SUCH_KEY: the variable is unset or empty" in unset.stderr
    dead = _gateway_cli("--listen", f"127.0.0.1:{free_port()}", "--", sys.executable, "-c", "raise SystemExit(3)")
    _, stderr = dead.communicate(timeout=60)
    assert dead.returncode == 1
    assert stderr.strip().splitlines()[-1].endswith("error: the server exited with code 3 before it was ready")


def test_gateway_cli_serves_probes_and_stops_its_child_on_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "fake_triton.py"
    script.write_text(FAKE_SERVER)
    listen, upstream = free_port(), free_port()
    process = _gateway_cli(
        "--listen",
        f"127.0.0.1:{listen}",
        "--upstream",
        f"127.0.0.1:{upstream}",
        "--health-period-s",
        "0.5",
        "--health-failures",
        "2",
        "--admin-key-env",
        "TIERGATE_TEST_ADMIN_KEY",
        "--",
        sys.executable,
        str(script),
        str(upstream),
        str(tmp_path / "broken"),
        env={"TIERGATE_TEST_ADMIN_KEY": KEY},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{listen}/tiergate/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("the gateway never became ready")
        (child,) = _child_pids(process.pid)
        base = f"http://127.0.0.1:{listen}"
        assert httpx.post(f"{base}/v2/models/tiergate/infer", json=canary_request()).status_code == 200
        assert httpx.get(f"{base}/v2/logging").status_code == 403
        assert httpx.get(f"{base}/v2/logging", headers={ADMIN_HEADER: KEY}).status_code == 200
        in_flight: list[int] = []
        slow = threading.Thread(
            target=lambda: in_flight.append(httpx.post(f"{base}/v2/models/tiergate/infer", json={"slow": 1}).status_code)
        )
        slow.start()
        time.sleep(0.5)  # the slow request is at the server now
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        slow.join(10)
        assert process.returncode == 0, stderr
        assert in_flight == [200], stderr  # answered before the child was stopped
        assert "SIGTERM: stopping python" in stderr and KEY not in stderr
        for noise in ("Traceback", "Task was destroyed", "Event loop is closed"):
            assert noise not in stderr, stderr
        assert not Path(f"/proc/{child}").exists()
    finally:
        if process.poll() is None:
            process.kill()


def test_gateway_cli_exits_when_the_health_check_keeps_failing(tmp_path: Path) -> None:
    script = tmp_path / "fake_triton.py"
    script.write_text(FAKE_SERVER)
    listen, upstream = free_port(), free_port()
    process = _gateway_cli(
        "--listen",
        f"127.0.0.1:{listen}",
        "--upstream",
        f"127.0.0.1:{upstream}",
        "--health-period-s",
        "0.5",
        "--health-failures",
        "2",
        "--",
        sys.executable,
        str(script),
        str(upstream),
        str(tmp_path / "broken"),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{listen}/tiergate/health/ready").status_code == 200:
                    break
            time.sleep(0.1)
        (child,) = _child_pids(process.pid)
        (tmp_path / "broken").touch()
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 1, stderr
        last = stderr.strip().splitlines()[-1]
        assert last == "error: health check failed 2 times in a row: HTTP 500: Stub process is not healthy.; stopping python"
        assert not Path(f"/proc/{child}").exists()
    finally:
        if process.poll() is None:
            process.kill()


def test_serve_refuses_a_work_dir_another_serve_holds(tmp_path: Path) -> None:
    from tiergate.outputs import exclusive_lock

    repository = tmp_path / "repo"
    repository.mkdir()
    (repository / "repository.json").write_text('{"model_name": "tiergate"}')
    work_dir = tmp_path / "work"
    with exclusive_lock(tmp_path / ".work.serve.lock", ServerError("held"), ServerError):  # what a running serve holds
        second = subprocess.run(
            [sys.executable, "-m", "tiergate.cli.main", "serve", "--model-repo", str(repository), "--work-dir", str(work_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 2 and second.stderr.strip().count("\n") == 0, second.stderr
    assert f"--work-dir {work_dir} is in use by another tiergate serve" in second.stderr
    assert not work_dir.exists()  # nothing written: no admin key, no served copy
