"""`tiergate gateway`: the pod's process: the gateway in front of a model server it runs as its child.

In the chart's ServingRuntime: `tiergate repository verify /mnt/models -- tiergate gateway --listen 0.0.0.0:8080
--upstream 127.0.0.1:8000 ... -- tritonserver --http-address=127.0.0.1 ...`
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from typing import Annotated

import httpx
import typer

from tiergate.errors import TiergateError


def parse_address(value: str, option: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TiergateError(f"{option} {value!r} is not HOST:PORT (e.g. 0.0.0.0:8080)")
    return host, int(port)


def admin_key_from(variable: str | None) -> str | None:
    if variable is None:
        return None
    key = os.environ.get(variable, "")
    if not key:
        raise TiergateError(f"--admin-key-env {variable}: the variable is unset or empty (omit the option to close admin routes)")
    return key


def wait_upstream_ready(process: subprocess.Popen[bytes], upstream: str, timeout_s: float) -> str | None:
    """None once `GET /v2/health/ready` answers 200; else why not (the child exited, or time ran out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"the server exited with code {process.returncode} before it was ready"
        try:
            if httpx.get(f"http://{upstream}/v2/health/ready", timeout=2.0).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return f"the server at {upstream} was not ready after {timeout_s:.0f}s"


def gateway(
    command: Annotated[list[str], typer.Argument(help="After `--`: the model server to run (e.g. tritonserver ...).")],
    listen: Annotated[str, typer.Option(help="HOST:PORT the gateway listens on (the pod's HTTP port).")] = "0.0.0.0:8080",
    upstream: Annotated[str, typer.Option(help="HOST:PORT of the server's own HTTP (bind it to loopback).")] = "127.0.0.1:8000",
    model: Annotated[str, typer.Option(help="The ensemble: the only model reachable without the admin header.")] = "tiergate",
    max_request_bytes: Annotated[int, typer.Option(help="Request bodies over this get 413.", min=1)] = 4 * 1024 * 1024,
    health_period_s: Annotated[float, typer.Option(help="Seconds between canary classifications.", min=0.1)] = 10.0,
    health_timeout_s: Annotated[float, typer.Option(help="Seconds one canary classification may take.", min=0.1)] = 5.0,
    health_failures: Annotated[int, typer.Option(help="Failed checks (error answers) in a row that end the process.", min=1)] = 3,
    health_busy_limit_s: Annotated[
        float, typer.Option(help="Seconds of unanswered (busy) checks in a row that end the process.", min=1)
    ] = 300.0,
    body_timeout_s: Annotated[float, typer.Option(help="A request body not received within this gets 408.", min=0.1)] = 30.0,
    max_connections: Annotated[int, typer.Option(help="Requests in flight at once; more get 503.", min=1)] = 64,
    admin_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the admin key (unset option: admin routes closed).")
    ] = None,
    startup_timeout_s: Annotated[float, typer.Option(help="How long the server may take to become ready.", min=1)] = 900.0,
    stop_timeout_s: Annotated[float, typer.Option(help="Graceful stop of the server before SIGKILL.", min=1)] = 20.0,
) -> None:
    """Run the server as a child behind the gateway; exit non-zero when it exits or fails its health check.

    Public: health, server metadata and the ensemble's metadata/config/ready/infer. Anything else needs
    the header `tiergate-admin: <key>`. `/tiergate/health/ready` and `/live` (200/503) are the probes: an
    error answer to the canary is a failure, no answer in time is busy (not ready, still live until
    --health-busy-limit-s). SIGTERM/SIGINT close the listener, let requests in flight finish (up to
    --stop-timeout-s), then stop the child (SIGTERM, then SIGKILL after --stop-timeout-s) and exit 0.
    """
    from tiergate.serving.gateway import GatewayConfig, GatewayServer
    from tiergate.serving.health import HealthMonitor
    from tiergate.serving.server import die_with_parent, stop_process
    from tiergate.serving.supervise import Outcome, Watch, interrupt_on_stop_signals, shielded_from_stop_signals

    if not command:
        raise TiergateError("no server command: give it after `--` (e.g. -- tritonserver --model-store=...)")
    host, port = parse_address(listen, "--listen")
    upstream_host, upstream_port = parse_address(upstream, "--upstream")
    upstream = f"{upstream_host}:{upstream_port}"
    config = GatewayConfig(
        upstream,
        model,
        max_request_bytes,
        admin_key_from(admin_key_env),
        body_timeout_s=body_timeout_s,
        max_connections=max_connections,
    )
    name = os.path.basename(command[0])
    watch = Watch(name)
    monitor = HealthMonitor(
        upstream,
        model,
        period_s=health_period_s,
        timeout_s=health_timeout_s,
        failure_threshold=health_failures,
        busy_limit_s=health_busy_limit_s,
        on_not_live=watch.on_not_live,
    )
    server = GatewayServer(config, host, port, monitor, drain_timeout_s=stop_timeout_s)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one INFO line per health check
    outcome: Outcome | None = None
    with interrupt_on_stop_signals():
        try:
            process = subprocess.Popen(command, start_new_session=True, preexec_fn=die_with_parent)
        except OSError as error:
            raise TiergateError(f"cannot start {command[0]}: {error.strerror or error}") from None
        try:
            server.start()
            typer.echo(f"gateway on http://{host}:{port} -> {upstream} (model {model}); waiting for {name}", err=True)
            problem = wait_upstream_ready(process, upstream, startup_timeout_s)
            if problem is None:
                monitor.start()
                typer.echo(f"{name} ready; health check every {health_period_s:g}s", err=True)
                outcome = watch.wait(process)
            else:
                outcome = Outcome("exited", problem)
        except KeyboardInterrupt as interrupt:
            outcome = Outcome.stopped(interrupt, name)
        finally:
            with shielded_from_stop_signals():
                if outcome is not None:
                    typer.echo(outcome.message if outcome.kind == "signal" else f"error: {outcome.message}", err=True)
                monitor.stop()
                server.stop()  # listener closed, requests in flight answered (bounded), then the child stops
                stop_process(process, stop_timeout_s)
    assert outcome is not None
    raise typer.Exit(outcome.exit_code)
