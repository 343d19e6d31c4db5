"""`tiergate serve`, `tiergate classify`, `tiergate demo`: the local Triton server and its client."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from tiergate.artifacts import GATE_FILE, REPOSITORY_MANIFEST
from tiergate.cli.options import CaFileOption, HeaderOption, InsecureOption
from tiergate.errors import TiergateError

DEMO_TEXTS = [
    ("i know where you live, so watch your back", "general/message"),
    ("are we still on for coffee at the cafe on friday?", "general/message"),
    ("rates are on my page, incall or outcall tonight", "adult/listing"),
    ("explicit nsfw photos for subscribers", "adult/bio"),
    ("explicit nsfw photos for subscribers", "general/bio"),
]


def serve(
    model_repo: Annotated[
        Path, typer.Option("--model-repo", help="Triton model repository (e.g. runs/latest/model_repository).")
    ],
    host: Annotated[
        str, typer.Option(help="Address the gateway, gRPC and metrics bind to (0.0.0.0: all interfaces).")
    ] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="HTTP port (the gateway; Triton's own HTTP stays on loopback).")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port.")] = 8002,
    work_dir: Annotated[Path, typer.Option(help="Scratch folder: backends, server log, admin key.")] = Path(".cache/triton"),
    unverified: Annotated[
        bool, typer.Option("--unverified", help="Serve without the gate/digest check (development repositories only).")
    ] = False,
    max_request_bytes: Annotated[int, typer.Option(help="HTTP request bodies over this get 413.", min=1)] = 4 * 1024 * 1024,
    health_period_s: Annotated[float, typer.Option(help="Seconds between canary classifications.", min=0.1)] = 5.0,
    health_failures: Annotated[
        int, typer.Option(help="Failed health checks (error answers) in a row that stop the server.", min=1)
    ] = 3,
    health_busy_limit_s: Annotated[
        float, typer.Option(help="Seconds of unanswered (busy) health checks in a row that stop the server.", min=1)
    ] = 300.0,
    body_timeout_s: Annotated[float, typer.Option(help="A request body not received within this gets 408.", min=0.1)] = 30.0,
    max_connections: Annotated[int, typer.Option(help="Requests in flight at once at the gateway; more get 503.", min=1)] = 64,
) -> None:
    """Verify a model repository (files, manifest, gate), then serve it on a real Triton behind the gateway.

    Ctrl-C, SIGTERM or SIGINT stop it (exit 0): the gateway stops accepting, answers the requests in flight,
    then Triton stops. A canary classification every --health-period-s: an error answer is a failure, no
    answer in time is busy (a long queue); after --health-failures failures in a row, or --health-busy-limit-s
    of busy checks in a row, Triton is stopped and the command exits 1 (as when Triton crashes). Only one
    `tiergate serve` may use a --work-dir at a time. Admin APIs (inner models,
    repository control, logging, trace, statistics, shared memory) need the header `tiergate-admin: <key>`,
    the key being a fresh random one per launch in <work-dir>/admin-key (mode 0600).
    """
    from tiergate.errors import ServerError
    from tiergate.hashing import read_json
    from tiergate.outputs import exclusive_lock

    if not (model_repo / REPOSITORY_MANIFEST).is_file():
        raise TiergateError(f"{model_repo} is not a tiergate model repository (no repository.json)")
    model = str(read_json(model_repo / REPOSITORY_MANIFEST).get("model_name", "tiergate"))
    if unverified:
        typer.echo(f"warning: serving {model_repo} UNVERIFIED: no gate or digest check", err=True)
    try:
        work_dir.absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ServerError(f"cannot create {work_dir}: {error.strerror or error}") from None
    lock = work_dir.absolute().parent / f".{work_dir.absolute().name}.serve.lock"  # beside it: the work dir may not exist yet
    busy = ServerError(f"--work-dir {work_dir} is in use by another tiergate serve; stop it or choose another --work-dir")
    with exclusive_lock(lock, busy, ServerError):  # held until Triton has stopped: nothing else rewrites the work dir
        _serve_locked(
            model_repo, model, host, http_port, grpc_port, metrics_port, work_dir, unverified, max_request_bytes,
            health_period_s, health_failures, health_busy_limit_s, body_timeout_s, max_connections,
        )  # fmt: skip


def _serve_locked(
    model_repo: Path,
    model: str,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    work_dir: Path,
    unverified: bool,
    max_request_bytes: int,
    health_period_s: float,
    health_failures: int,
    health_busy_limit_s: float,
    body_timeout_s: float,
    max_connections: int,
) -> None:
    from tiergate.serving.gateway import GatewayConfig, GatewayServer
    from tiergate.serving.health import HealthMonitor
    from tiergate.serving.server import ADMIN_KEY_FILE, TritonServer, new_admin_key
    from tiergate.serving.supervise import Outcome, Watch, interrupt_on_stop_signals, shielded_from_stop_signals

    admin_key = new_admin_key()
    server = TritonServer(
        model_repo, work_dir, None, grpc_port, metrics_port, verify=not unverified, host=host, admin_key=admin_key
    )
    watch = Watch("Triton")
    monitor = HealthMonitor(
        server.http_url,
        model,
        period_s=health_period_s,
        timeout_s=min(5.0, health_period_s),
        failure_threshold=health_failures,
        busy_limit_s=health_busy_limit_s,
        on_not_live=watch.on_not_live,
    )
    config = GatewayConfig(
        server.http_url, model, max_request_bytes, admin_key, body_timeout_s=body_timeout_s, max_connections=max_connections
    )
    gateway = GatewayServer(config, host, http_port, monitor, drain_timeout_s=server.stop_timeout_s)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one INFO line per health check
    outcome: Outcome | None = None
    with interrupt_on_stop_signals():
        try:
            server.start()
            gateway.start()
            monitor.start()
            typer.echo(
                f"Triton ready: http://{host}:{http_port} (gateway, model {model})  grpc {host}:{grpc_port}  "
                f"metrics :{metrics_port}  admin key in {work_dir / ADMIN_KEY_FILE}  (Ctrl-C to stop)"
            )
            assert server.process is not None
            outcome = watch.wait(server.process)
        except KeyboardInterrupt as interrupt:
            outcome = Outcome.stopped(interrupt, "Triton")
        finally:
            with shielded_from_stop_signals():
                if outcome is not None and outcome.kind != "exited":
                    typer.echo(outcome.message, err=outcome.kind == "unhealthy")
                monitor.stop()
                gateway.stop()  # no new connections; the requests in flight get their answers from Triton
                server.stop()
    assert outcome is not None
    if outcome.kind == "exited":  # Triton crashed: a server failure (exit 1), not a user mistake (exit 2)
        typer.echo(f"error: {outcome.message}; see {server.log_file}", err=True)
    if outcome.kind != "signal":
        raise typer.Exit(1)


def _print(results: list, as_json: bool) -> None:  # type: ignore[type-arg]
    for result in results:
        if as_json:
            typer.echo(json.dumps(result.as_dict()))
            continue
        top = sorted(result.scores.items(), key=lambda item: -item[1])[:3]
        flags = ", ".join(result.flags) or "nothing flagged"
        tier = f"route T{result.max_tier}" if result.max_tier else "no route"
        windows = f" [{result.windows} windows]" if result.windows > 1 else ""
        typer.echo(
            f"[{result.context}] {result.text!r}\n    flags: {flags} ({tier})"
            f"{' [truncated]' if result.truncated else ''}{windows}\n    top scores: "
            + ", ".join(f"{name} {score:.3f}" for name, score in top)
        )


def _connection(header: list[str] | None, ca_file: Path | None, insecure: bool) -> dict[str, Any]:
    """--header/--ca-file/--insecure as ModerationClient keyword arguments."""
    from tiergate.client import parse_header

    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's C core would log TLS failures beside our one line

    headers: dict[str, str] = {}
    for item in header or []:
        name, value = parse_header(item)
        if any(name.lower() == known.lower() for known in headers):
            raise TiergateError(f"--header {name} is given twice")
        headers[name] = value
    return {"headers": headers, "ca_file": ca_file, "insecure": insecure}


def classify(
    text: Annotated[list[str], typer.Argument(help="Text(s) to classify.")],
    context: Annotated[str, typer.Option(help="AUDIENCE/SURFACE, e.g. adult/message.")] = "general/message",
    url: Annotated[
        str, typer.Option(help="Endpoint: host:port, http://host[:port] or https://host[:port] (TLS).")
    ] = "127.0.0.1:8000",
    protocol: Annotated[str, typer.Option(help="http or grpc.")] = "http",
    model: Annotated[str, typer.Option(help="Ensemble name.")] = "tiergate",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per text.")] = False,
    header: HeaderOption = None,
    ca_file: CaFileOption = None,
    insecure: InsecureOption = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.", min=0.1)] = 30.0,
) -> None:
    """Classify text against a running Triton endpoint: per-category scores, flags and routing tier."""
    from tiergate.client import ModerationClient
    from tiergate.taxonomy import load_taxonomy

    options = _connection(header, ca_file, insecure)
    labels = load_taxonomy().labels
    with ModerationClient(url, protocol, model, timeout_s=timeout, expected_labels=labels, **options) as client:  # type: ignore[arg-type]
        _print(client.classify(text, context), as_json)


def demo(
    run_dir: Annotated[Path, typer.Argument(help="A pipeline run folder (default: runs/latest).")] = Path("runs/latest"),
) -> None:
    """Serve a run's promoted model on a real local Triton and classify a few example texts."""
    from tiergate.client import ModerationClient
    from tiergate.gate import load_gate
    from tiergate.serving.server import TritonServer
    from tiergate.taxonomy import load_taxonomy

    repository = run_dir / "model_repository"
    if not (repository / REPOSITORY_MANIFEST).is_file():
        decision = load_gate(run_dir).decision if (run_dir / GATE_FILE).is_file() else "missing"
        typer.echo(f"{run_dir}: not promoted (gate {decision}); nothing to serve")
        return
    with TritonServer(repository, run_dir / "triton") as server:  # verifies the copy it serves
        client = ModerationClient(server.http_url, "http", expected_labels=load_taxonomy().labels)
        typer.echo(f"Triton serving {repository} at http://{server.http_url}")
        for text, context in DEMO_TEXTS:
            _print(client.classify(text, context), as_json=False)


def regression(
    url: Annotated[
        str, typer.Option(help="Endpoint: host:port, http://host[:port] or https://host[:port] (TLS).")
    ] = "127.0.0.1:8000",
    model: Annotated[str, typer.Option(help="Ensemble name.")] = "tiergate",
    protocol: Annotated[str, typer.Option(help="http or grpc.")] = "http",
    expect_version: Annotated[str | None, typer.Option(help="Fail unless the endpoint serves this model version.")] = None,
    suites: Annotated[Path | None, typer.Option(help="Regression suites folder (default: config/regression).")] = None,
    wait_s: Annotated[float, typer.Option(help="Wait this long for the endpoint to become ready.")] = 300.0,
    header: HeaderOption = None,
    ca_file: CaFileOption = None,
    insecure: InsecureOption = False,
) -> None:
    """Run the regression vectors against a live endpoint; exit 1 when a suite's policy fails.

    The chart's `helm test` runs it; the operator's canary analysis runs the same code.
    """
    from tiergate.client import check_settings
    from tiergate.serving import live_regression
    from tiergate.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    options = _connection(header, ca_file, insecure)
    check_settings(url, protocol, **options)  # type: ignore[arg-type]  # bad settings fail now, not after --wait-s
    client = live_regression.connect(
        url,
        model,
        taxonomy,
        protocol=protocol,  # type: ignore[arg-type]
        wait_s=wait_s,
        expect_version=expect_version,
        **options,  # type: ignore[arg-type]
    )
    result = live_regression.run(client, live_regression.load(suites, taxonomy), taxonomy)
    for name, summary in result["summary"].items():
        typer.echo(f"{name}: {summary}")
    for vector in live_regression.failing_vectors(result):
        typer.echo(f"  FAIL {vector['id']}: {vector['text']!r}")
    if not result["passed"]:
        raise typer.Exit(1)
    typer.echo("regression: PASS")
