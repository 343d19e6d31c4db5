"""`tiergate serve`, `tiergate classify`, `tiergate demo`: the local Triton server and its client."""

from __future__ import annotations

import json
import logging
import os
import time
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
    health_failures: Annotated[int, typer.Option(help="Failed health checks in a row that stop the server.", min=1)] = 3,
) -> None:
    """Verify a model repository (files, manifest, gate), then serve it on a real Triton behind the gateway.

    Ctrl-C, SIGTERM or SIGINT stop it (exit 0). A canary classification every --health-period-s; after
    --health-failures failures in a row Triton is stopped and the command exits 1. Admin APIs (inner models,
    repository control, logging, trace, statistics, shared memory) need the header `tiergate-admin: <key>`,
    the key being a fresh random one per launch in <work-dir>/admin-key (mode 0600).
    """
    from tiergate.hashing import read_json
    from tiergate.serving.gateway import GatewayConfig, GatewayServer
    from tiergate.serving.health import HealthMonitor
    from tiergate.serving.server import ADMIN_KEY_FILE, TritonServer, new_admin_key
    from tiergate.serving.supervise import Outcome, Watch, interrupt_on_stop_signals, shielded_from_stop_signals

    if not (model_repo / REPOSITORY_MANIFEST).is_file():
        raise TiergateError(f"{model_repo} is not a tiergate model repository (no repository.json)")
    model = str(read_json(model_repo / REPOSITORY_MANIFEST).get("model_name", "tiergate"))
    if unverified:
        typer.echo(f"warning: serving {model_repo} UNVERIFIED: no gate or digest check", err=True)
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
        on_not_live=watch.on_not_live,
    )
    gateway = GatewayServer(GatewayConfig(server.http_url, model, max_request_bytes, admin_key), host, http_port, monitor)
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
                gateway.stop()
                server.stop()
    assert outcome is not None
    if outcome.kind == "unhealthy":
        raise typer.Exit(1)
    if outcome.kind == "exited":
        raise TiergateError(f"{outcome.message}; see {server.log_file}")


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
    """Run the regression vectors against a live endpoint; exit 1 when a suite's policy fails (Helm test / PostSync)."""
    from tiergate.client import EndpointMismatch, ModerationClient, check_settings
    from tiergate.components.evaluate.regression import load_suites, run_suites
    from tiergate.paths import project_path
    from tiergate.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    options = _connection(header, ca_file, insecure)
    check_settings(url, protocol, **options)  # type: ignore[arg-type]  # bad settings fail now, not after --wait-s
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client = ModerationClient(url, protocol, model, expected_labels=taxonomy.labels, **options)  # type: ignore[arg-type]
            if client.ready():
                break
            client.close()
        except EndpointMismatch:
            raise  # untrusted TLS, or another protocol on that port: waiting cannot fix it
        except TiergateError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TiergateError(f"{url}: model {model} not ready after {wait_s:.0f}s")
        time.sleep(2)
    if expect_version is not None and client.model_version != expect_version:
        raise TiergateError(f"{url} serves model version {client.model_version!r}, expected {expect_version!r}")

    def classify(texts: list[str], contexts: list) -> tuple:  # type: ignore[type-arg]
        return client.arrays(texts, [str(context) for context in contexts])  # labels checked equal to the taxonomy's

    result = run_suites(load_suites(suites or project_path("config/regression"), taxonomy), taxonomy, classify)
    for name, summary in result["summary"].items():
        typer.echo(f"{name}: {summary}")
    for suite in result["suites"].values():
        for vector in suite["vectors"]:
            if vector["status"] == "fail":
                typer.echo(f"  FAIL {vector['id']}: {vector['text']!r}")
    if not result["passed"]:
        raise typer.Exit(1)
    typer.echo("regression: PASS")
