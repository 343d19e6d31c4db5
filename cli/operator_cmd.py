"""`tiergate operator run` and `tiergate status`: the rollout operator and what it reports."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from tiergate.cli.options import ProfileOption

app = typer.Typer(help="The ModerationModel operator: canary, live verification, promotion or rollback.", no_args_is_help=True)

KubeconfigOption = Annotated[
    str | None, typer.Option(help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else the pod's service account).")
]
ContextOption = Annotated[str | None, typer.Option(help="kubeconfig context (default: its current context).")]


@app.command("run")
def run(
    namespace: Annotated[
        str, typer.Option(help="Watch this namespace only (empty: every namespace; needs the ClusterRole).")
    ] = "",
    profile: ProfileOption = "production",
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    lease_namespace: Annotated[str, typer.Option(help="Namespace of the leader-election Lease (default: --namespace).")] = "",
    lease_name: Annotated[str, typer.Option(help="Leader-election Lease name.")] = "tiergate-operator",
    leader_election: Annotated[bool, typer.Option(help="Elect a leader (needed with more than one replica).")] = True,
    identity: Annotated[str, typer.Option(help="This replica's name in the Lease (default: $POD_NAME, else host-pid).")] = "",
    health_port: Annotated[int, typer.Option(help="Port of /healthz and /readyz (0: none).", min=0, max=65535)] = 8081,
    resync_seconds: Annotated[float, typer.Option(help="Look at every model at least this often.", min=1.0, max=3600.0)] = 60.0,
    analysis_address: Annotated[
        str, typer.Option(help="Canary URL for the analysis: cluster-local (in a pod) or status (as KServe reports it).")
    ] = "cluster-local",
    suites: Annotated[Path | None, typer.Option(help="Regression suites folder (default: config/regression).")] = None,
) -> None:
    """Run the operator until SIGTERM: verify, canary, analyse and promote or roll back every ModerationModel."""
    from tiergate.errors import ConfigError
    from tiergate.gate import configured_policy
    from tiergate.profiles import load_profile
    from tiergate.serving import live_regression
    from tiergate.serving.operator.controller import Controller, Settings
    from tiergate.serving.operator.kube import MODELS, Kube, api_client
    from tiergate.serving.operator.leader import LeaderElector
    from tiergate.serving.operator.runner import run as run_operator
    from tiergate.taxonomy import load_taxonomy

    if analysis_address not in ("cluster-local", "status"):
        raise ConfigError(f"--analysis-address {analysis_address!r}: use cluster-local or status")
    for kind, value in (("namespace", namespace), ("lease namespace", lease_namespace), ("lease name", lease_name)):
        if value:
            _check_dns_label(kind, value)
    taxonomy = load_taxonomy()
    resolved = load_profile(profile)
    client = api_client(kubeconfig, context)
    kube = Kube(client)
    with _api_errors(client.configuration.host):  # a wrong cluster or missing CRD is one line now, not a retry loop
        kube.list_objects(MODELS, namespace or None)
    identity = identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    settings = Settings(
        namespace=namespace or None,
        store=resolved.publish,
        policy=configured_policy(taxonomy, resolved),
        taxonomy=taxonomy,
        suites=live_regression.load(suites, taxonomy),
        identity=identity,
        analysis_address=analysis_address,  # type: ignore[arg-type]
        resync_seconds=resync_seconds,
    )
    elector = None
    if leader_election:
        if not (lease_namespace or namespace):
            raise ConfigError("--lease-namespace is needed when watching every namespace (where does the Lease live?)")
        elector = LeaderElector(kube, lease_namespace or namespace, lease_name, identity)
    run_operator(Controller(kube, settings), elector, health_port or None)


def _check_dns_label(kind: str, value: str) -> None:
    """Namespaces and Lease names are DNS labels; anything else would reach the API path as typed."""
    import re

    from tiergate.errors import ConfigError

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
        raise ConfigError(f"{kind} {value[:80]!r} is not a DNS label (lower-case letters, digits, '-'; at most 63)")


def status(
    name: Annotated[str | None, typer.Argument(help="One ModerationModel (default: all).")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace (empty: every namespace).")] = "",
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The status objects as JSON lines.")] = False,
) -> None:
    """Versions, phases, traffic and the last live analysis of the ModerationModels."""
    from tiergate.errors import ConfigError
    from tiergate.serving.operator.kube import MODELS, Kube, api_client

    if namespace:
        _check_dns_label("namespace", namespace)
    if name is not None:
        _check_dns_label("name", name)
        if not namespace:
            raise ConfigError("a name needs --namespace")
    client = api_client(kubeconfig, context)
    kube = Kube(client, request_timeout_s=15)
    with _api_errors(client.configuration.host):
        if name is not None:
            found = kube.get(MODELS, namespace, name)
            if found is None:
                raise ConfigError(f"no ModerationModel {namespace}/{name}")
            items = [found]
        else:
            items, _ = kube.list_objects(MODELS, namespace or None)
    if not items:
        typer.echo(f"no ModerationModels in {namespace or 'any namespace'}")
        return
    for item in sorted(
        items, key=lambda entry: (str(entry.get("metadata", {}).get("namespace")), str(entry.get("metadata", {}).get("name")))
    ):
        typer.echo(json.dumps(_summary(item)) if as_json else _describe(item))


@contextmanager
def _api_errors(host: str) -> Iterator[None]:
    """The API server unreachable or refusing us is one line, not the client's retry log and traceback."""
    import logging

    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from tiergate.errors import TiergateError

    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # its retry warnings, once per attempt
    try:
        yield
    except ApiException as error:
        hint = {401: " (credentials rejected)", 403: " (RBAC: get/list moderationmodels needed)", 404: " (is the CRD installed?)"}
        raise TiergateError(f"{host}: HTTP {error.status} {error.reason}{hint.get(error.status or 0, '')}") from None
    except (HTTPError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise TiergateError(f"cannot reach the Kubernetes API at {host}: {' '.join(str(reason).split())[:200]}") from None


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    """What `status` shows of one object, read through the operator's own models: a damaged field is
    reported, never a crash, and one odd object does not hide the others."""
    from tiergate.moderation_model import parse_status

    metadata, spec = _mapping(item.get("metadata")), _mapping(item.get("spec"))
    model = _mapping(spec.get("model"))
    status, damage = parse_status(item)
    analysis = status.last_analysis.wire() if status.last_analysis else None
    return {
        "namespace": _clean(metadata.get("namespace")),
        "name": _clean(metadata.get("name")),
        "version": _clean(model.get("version")) or None,
        "phase": status.phase if not damage else "Unknown",
        "traffic": status.traffic_percent,
        "serving": _clean(status.current.version) if status.current else None,
        "previous": _clean(status.previous.version) if status.previous else None,
        "message": _clean(status.message) if not damage else f"status unreadable: {_clean(damage)}",
        "stale": status.observed_generation != metadata.get("generation"),
        "lastAnalysis": analysis,
    }


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _clean(value: Any, limit: int = 300) -> str:
    """Text from the cluster as one printable line: control characters (ANSI escapes, newlines) dropped."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    text = "".join(char if char.isprintable() else " " for char in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


MAX_SHOWN_VECTORS = 10


def _describe(item: dict[str, Any]) -> str:
    entry = _summary(item)
    phase = entry["phase"] + (" (not yet seen by the operator)" if entry["stale"] else "")
    share = "not rolled out yet" if entry["stale"] else f"{entry['traffic']} % of traffic"
    lines = [
        f"{entry['namespace']}/{entry['name']}: {phase}",
        f"  version {entry['version']}: {share}; serving {entry['serving'] or '-'}; previous {entry['previous'] or '-'}",
    ]
    if entry["message"]:
        lines.append(f"  {entry['message']}")
    analysis = entry["lastAnalysis"]
    if analysis:
        verdict = "passed" if analysis["passed"] else f"failed ({_clean(analysis['reason'])})"
        when, version = _clean(analysis["time"]), _clean(analysis["version"])
        lines.append(f"  last analysis {when}: {version} at {analysis['trafficPercent']} % {verdict}")
        for suite, result in sorted((analysis.get("suites") or {}).items()):
            lines.append(f"    {_clean(suite)}: {_clean(result)}")
        failing = analysis.get("failingVectors") or []
        for vector in failing[:MAX_SHOWN_VECTORS]:
            lines.append(f"    FAIL {_clean(vector['id'])} [{_clean(vector['context'])}]: {_clean(vector['text'], 120)!r}")
        if len(failing) > MAX_SHOWN_VECTORS:
            lines.append(f"    ... and {len(failing) - MAX_SHOWN_VECTORS} more (--json lists them)")
    return "\n".join(lines)
