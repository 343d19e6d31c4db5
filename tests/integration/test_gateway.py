"""The gateway, the canary health check and `tiergate serve` against a real local Triton.

One Triton behind an in-process gateway for the routing rules; then `tiergate serve` as a
subprocess three times: a python-backend stub killed under load (health check, monitor, exit),
and SIGTERM / SIGINT sent to the CLI's PID alone (Triton and its stubs must not survive).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tiergate.client import ModerationClient
from tiergate.serving.gateway import ADMIN_HEADER, GatewayConfig, GatewayServer
from tiergate.serving.health import HealthMonitor, canary_request, check_health
from tiergate.serving.server import TritonServer, free_port
from tiergate.taxonomy import Taxonomy

pytestmark = pytest.mark.slow

KEY = "test-admin-key-0123456789"
CAP = 64 * 1024
MODEL = "tiergate"


@pytest.fixture(scope="module")
def repository(tiny_repository: Path) -> Path:
    return tiny_repository


# --- processes, by pid ------------------------------------------------------------------------------------


def children(pid: int) -> dict[int, str]:
    """Direct children of `pid`: their argv[0] by pid (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = argv0
    return found


def running(pid: int) -> bool:
    """True while the pid exists and is not a zombie."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(running(pid) for pid in pids):
            return True
        time.sleep(0.2)
    return False


class Serve:
    """`tiergate serve` as a subprocess; its output is drained into `lines` as it comes."""

    def __init__(self, repository: Path, work_dir: Path, *extra: str):
        self.port = free_port()
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tiergate.cli.main",
                "serve",
                "--model-repo",
                str(repository),
                "--http-port",
                str(self.port),
                "--grpc-port",
                str(free_port()),
                "--metrics-port",
                str(free_port()),
                "--work-dir",
                str(work_dir),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._drain = threading.Thread(target=lambda: self.lines.extend(self.process.stdout or []), daemon=True)
        self._drain.start()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            if "Triton ready" in self.output:
                return
            time.sleep(0.2)
        raise AssertionError(f"tiergate serve did not become ready:\n{self.output[-3000:]}")

    def triton(self) -> int:
        (pid,) = [pid for pid, argv0 in children(self.process.pid).items() if argv0.endswith("tritonserver")]
        return pid

    def stubs(self) -> dict[int, str]:
        return {pid: argv0 for pid, argv0 in children(self.triton()).items() if argv0.endswith("triton_python_backend_stub")}

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- the gateway in front of one live Triton ------------------------------------------------------------


@dataclass
class Front:
    triton: TritonServer
    gateway: GatewayServer
    monitor: HealthMonitor

    @property
    def base(self) -> str:
        return f"http://{self.gateway.url}"


@pytest.fixture(scope="class")
def front(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    """Class scope: this Triton is stopped before the `tiergate serve` tests start theirs (2 cores)."""
    with TritonServer(repository, tmp_path_factory.mktemp("triton"), admin_key=KEY) as triton:
        monitor = HealthMonitor(triton.http_url, MODEL, period_s=1, timeout_s=5, failure_threshold=3).start()
        try:
            with GatewayServer(GatewayConfig(triton.http_url, MODEL, CAP, KEY), "127.0.0.1", 0, monitor) as gateway:
                yield Front(triton, gateway, monitor)
        finally:
            monitor.stop()


class TestGatewayOnLiveTriton:
    def test_ensemble_through_the_gateway_and_probes(self, front: Front, taxonomy: Taxonomy) -> None:
        client = ModerationClient(front.gateway.url, expected_labels=taxonomy.labels)
        result = client.classify(["i know where you live", "see you friday"], "general/message")
        assert len(result) == 2 and all(len(item.scores) == 33 for item in result)
        assert check_health(front.gateway.url, MODEL, timeout_s=10).ok  # the same check, through the front door
        deadline = time.monotonic() + 10
        while not front.monitor.ready and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(f"{front.base}/tiergate/health/ready").status_code == 200
        assert httpx.get(f"{front.base}/tiergate/health/live").status_code == 200
        for path in ("/v2", "/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/config"):
            assert httpx.get(front.base + path).status_code == 200, path

    def test_a_body_over_the_cap_gets_413_and_the_server_still_answers(self, front: Front) -> None:
        infer = f"{front.base}/v2/models/{MODEL}/infer"
        padded = canary_request()
        padded["inputs"][0]["data"] = ["x" * (CAP + 1)]
        response = httpx.post(infer, json=padded, timeout=30)
        assert response.status_code == 413 and "over the limit" in response.json()["error"]
        assert "\n" not in response.text.strip()

        def chunks() -> Iterator[bytes]:
            for _ in range(CAP // 1024 + 8):
                yield b" " * 1024

        assert httpx.post(infer, content=chunks(), timeout=30).status_code == 413  # chunked: counted as it arrives
        assert httpx.post(infer, json=canary_request(), timeout=30).status_code == 200
        assert check_health(front.gateway.url, MODEL, timeout_s=10).ok

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("POST", "/v2/models/classifier/infer", "Unable to parse 'inputs'"),  # reached Triton, which refuses `{}`
            ("GET", "/v2/models/classifier/config", '"name":"classifier"'),
            ("POST", "/v2/models/postprocess/infer", "Unable to parse 'inputs'"),
            ("POST", "/v2/repository/index", '"name":"tokenizer"'),
            ("GET", "/v2/logging", '"log_verbose_level"'),
        ],
    )
    def test_admin_routes_need_the_right_header(self, front: Front, method: str, path: str, allowed: str) -> None:
        body = b"{}" if method == "POST" else None
        for headers in ({}, {ADMIN_HEADER: "wrong"}, {ADMIN_HEADER: KEY + "x"}):
            response = httpx.request(method, front.base + path, headers=headers, content=body, timeout=30)
            assert response.status_code == 403, (path, headers)
            assert KEY not in response.text
        response = httpx.request(method, front.base + path, headers={ADMIN_HEADER: KEY}, content=body, timeout=30)
        assert response.status_code != 403 and allowed in response.text, response.text[:300]

    def test_triton_itself_restricts_the_admin_categories(self, front: Front) -> None:
        """Behind the gateway, Triton's own HTTP is a second lock (--http-restricted-api with the same key)."""
        direct = f"http://{front.triton.http_url}"
        assert httpx.post(f"{direct}/v2/repository/index").status_code == 403
        assert httpx.get(f"{direct}/v2/logging").status_code == 403
        assert httpx.post(f"{direct}/v2/repository/index", headers={ADMIN_HEADER: KEY}).status_code == 200
        assert httpx.get(f"{direct}/v2/models/{MODEL}/config").status_code == 200  # metadata/inference stay open


# --- `tiergate serve`: a killed stub, and stop signals ---------------------------------------------------


def test_a_killed_stub_fails_the_health_check_and_serve_exits(repository: Path, tmp_path: Path) -> None:
    period, failures, slack = 2.0, 3, 8.0
    busy_limit = period * failures  # a killed stub may answer 500 (failures) or leave requests hanging (busy): both end it
    serve = Serve(
        repository,
        tmp_path,
        "--health-period-s",
        str(period),
        "--health-failures",
        str(failures),
        "--health-busy-limit-s",
        str(busy_limit),
    )
    stop_load = threading.Event()
    statuses: Counter[str] = Counter()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop_load.is_set():
                try:
                    response = client.post(f"http://{serve.url}/v2/models/{MODEL}/infer", json=canary_request())
                    statuses[str(response.status_code)] += 1
                except httpx.HTTPError as error:
                    statuses[type(error).__name__] += 1
                    time.sleep(0.2)
                time.sleep(0.05)

    try:
        serve.wait_ready()
        triton = serve.triton()
        stubs = serve.stubs()
        assert len(stubs) == 3, stubs  # tokenizer, classifier, postprocess
        assert check_health(serve.url, MODEL, timeout_s=10).ok
        dead = threading.Event()
        monitor = HealthMonitor(
            serve.url,
            MODEL,
            period_s=period,
            timeout_s=period / 2,
            failure_threshold=failures,
            busy_limit_s=busy_limit,
            on_not_live=lambda *_: dead.set(),
        ).start()
        clients = [threading.Thread(target=load, daemon=True) for _ in range(3)]
        for thread in clients:
            thread.start()
        time.sleep(1.0)
        assert statuses["200"] > 0, statuses
        victim = next(pid for pid in stubs)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()

        failed_after, report = None, None
        while time.monotonic() - killed < period:  # a check's verdict comes within its timeout: period / 2
            report = check_health(serve.url, MODEL, timeout_s=period / 2)
            if not report.ok:
                failed_after = time.monotonic() - killed
                break
            time.sleep(0.1)
        assert failed_after is not None and failed_after <= period, f"still classifying one period after the kill: {report}"
        assert dead.wait(period * failures + slack), f"monitor still live: {monitor.detail}"
        not_live_after = time.monotonic() - killed
        monitor.stop()

        code = serve.process.wait(timeout=period * failures + slack + 60)  # + Triton's bounded stop
        exited_after = time.monotonic() - killed
        stop_load.set()
        assert code == 1, serve.output[-3000:]
        line = r"^health check (failed|got no answer \(busy past the busy limit\)) \d+ times in a row: .+; stopping Triton$"
        assert re.search(line, serve.output, re.MULTILINE), serve.output[-3000:]
        assert gone_within([triton, *stubs], 15), "tritonserver or a stub survived tiergate serve"
        print(  # the numbers the README quotes
            f"\nstub killed: check failed after {failed_after:.2f}s, monitor not live after {not_live_after:.2f}s, "
            f"serve exited after {exited_after:.2f}s; first failed check: {report}; requests during the run: {dict(statuses)}"
        )
    finally:
        stop_load.set()
        serve.close()


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; this only picks the outgoing interface
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_serve_pid_alone_stops_triton(repository: Path, tmp_path: Path, signum: signal.Signals) -> None:
    serve = Serve(repository, tmp_path)
    try:
        serve.wait_ready()
        triton, stubs = serve.triton(), list(serve.stubs())
        assert ModerationClient(serve.url).ready()
        if signum == signal.SIGTERM:  # the default bind is loopback: listening on 127.0.0.1, not reachable elsewhere
            if shutil.which("ss"):
                listening = subprocess.run(["ss", "-ltnH", f"sport = :{serve.port}"], capture_output=True, text=True).stdout
                assert listening.split()[3] == f"127.0.0.1:{serve.port}", listening
            other = _non_loopback_address()
            if other is not None:
                with pytest.raises(OSError), socket.create_connection((other, serve.port), timeout=2):
                    pass
            key_file = tmp_path / "admin-key"
            assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.read_text() not in serve.output
        os.kill(serve.process.pid, signum)  # the pid alone, not the process group
        started = time.monotonic()
        code = serve.process.wait(timeout=60)
        stopped_after = time.monotonic() - started
        assert code == 0, serve.output[-3000:]
        assert f"{signum.name}: stopping Triton" in serve.output
        for noise in ("Traceback", "Task was destroyed", "Event loop is closed"):  # a clean stop, no asyncio debris
            assert noise not in serve.output, serve.output[-3000:]
        assert gone_within([triton, *stubs], 10), "tritonserver or a stub outlived tiergate serve"
        print(f"\n{signum.name}: tiergate serve and Triton stopped in {stopped_after:.2f}s")
    finally:
        serve.close()


def test_a_second_serve_on_the_work_dir_is_refused_and_a_crashed_triton_is_exit_1(repository: Path, tmp_path: Path) -> None:
    serve = Serve(repository, tmp_path)
    try:
        serve.wait_ready()
        key = (tmp_path / "admin-key").read_text()
        second = Serve(repository, tmp_path)  # the same --work-dir: it would rewrite the key and the served copy
        code = second.process.wait(timeout=60)
        second._drain.join(5)
        assert code == 2 and second.output.strip().count("\n") == 0, second.output
        assert "is in use by another tiergate serve" in second.output
        assert (tmp_path / "admin-key").read_text() == key and ModerationClient(serve.url).ready()  # the first one untouched

        triton = serve.triton()
        os.kill(triton, signal.SIGKILL)  # a crash, not a user mistake: exit 1, one line
        code = serve.process.wait(timeout=60)
        serve._drain.join(5)
        assert code == 1, serve.output[-3000:]
        last = serve.output.strip().splitlines()[-1]
        assert re.fullmatch(r"error: Triton exited with code -9; see .+tritonserver\.log", last), serve.output[-3000:]
        assert "Traceback" not in serve.output
    finally:
        serve.close()
