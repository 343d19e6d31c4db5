"""`tiergate pipeline`: compile for the cluster, run locally with kfp.local, submit to a KFP API server."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path
from typing import Annotated

import typer

from tiergate.artifacts import EVAL_METRICS, GATE_FILE, REGRESSION_RESULTS, REPORT_HTML, REPORT_MD, THRESHOLDS_FILE
from tiergate.errors import TiergateError

app = typer.Typer(help="Compile, run (locally) and submit the KFP v2 pipeline.", no_args_is_help=True)
RUNS = Path("runs")


@app.command("compile")
def compile_(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output YAML (default: pipelines/compiled/tiergate.yaml).")
    ] = None,
    profile: Annotated[
        str, typer.Option("--profile", "-p", help="Profile whose `pipeline` settings are compiled in.")
    ] = "production",
) -> None:
    """Compile the pipeline to the YAML you upload in the KFP dashboard."""
    from tiergate.pipelines.runner import COMPILED, compile_pipeline

    path = compile_pipeline(out or COMPILED, profile)
    typer.echo(f"compiled: {path}")


RUN_RESULTS = (GATE_FILE, REPORT_HTML, REPORT_MD, THRESHOLDS_FILE, EVAL_METRICS, REGRESSION_RESULTS)


def _collect_run_results(run_dir: Path, outputs: dict) -> None:  # type: ignore[type-arg]
    """Copy the run's key results out of the KFP artifacts to runs/<id>/ and point runs/latest at it."""
    evaluation = outputs["evaluation"]
    for name in RUN_RESULTS:
        shutil.copyfile(evaluation / name, run_dir / name)
    if outputs["model_repository"] is not None:
        target = run_dir / "model_repository"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(outputs["model_repository"], target)
    latest = run_dir.parent / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name)


@app.command("run")
def run(
    local: Annotated[bool, typer.Option("--local", help="Run with kfp.local on this machine.")] = False,
    runner: Annotated[
        str,
        typer.Option(
            "--runner",
            help="subprocess: every task in this environment; docker: every task in its image (build them with `make images`).",
        ),
    ] = "subprocess",
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name or YAML path.")] = "local",
    categories: Annotated[str, typer.Option(help="Comma-separated category subset (default: all).")] = "",
    counts: Annotated[str, typer.Option(help="Per-category count overrides, e.g. positives=100,hard_negatives=50.")] = "",
    base_model: Annotated[str, typer.Option(help="Override the profile's base model.")] = "",
    run_id: Annotated[str | None, typer.Option(help="Run id (default: UTC timestamp); results in runs/<id>/.")] = None,
    public_data: Annotated[
        str,
        typer.Option(
            "--public-data",
            help="Folder (or pvc:// / s3:// / gs:// URL) of the public labelled sets, e.g. ../shared/public-data; "
            "empty: generated data only.",
        ),
    ] = "",
    previous_model: Annotated[
        str,
        typer.Option(
            "--previous-model",
            help="The model to screen generated negatives with and compare against: a storageUri, a repository folder, "
            "or 'promoted' (the version the profile's GitOps repository serves now; none yet: a first model).",
        ),
    ] = "",
    feedback_data: Annotated[
        str,
        typer.Option(
            "--feedback-data",
            help="Folder (or pvc:// / s3:// / gs:// URL) of a `tiergate feedback export`: reviewed items whose labels "
            "win over generated and public ones; empty: none.",
        ),
    ] = "",
) -> None:
    """Run the whole pipeline end to end; results land in runs/<id>/ and runs/latest."""
    from tiergate.gate import load_gate
    from tiergate.pipelines.runner import RUNNERS, run_local
    from tiergate.trust import check_name

    if not local:
        raise TiergateError("only --local runs here; use `tiergate pipeline submit --host URL` for a cluster")
    if runner not in RUNNERS:
        raise TiergateError(f"unknown runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    run_id = run_id or datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    check_name("model version", run_id)  # it names runs/<id>/ and, by default, the model version: check it now
    # before anything starts: a bad location is one line now, not at step 2
    public_data = checked_location("--public-data", public_data)
    feedback_data = checked_location("--feedback-data", feedback_data)
    if feedback_data and "://" not in feedback_data:  # the import task's checks, now rather than mid-run
        from tiergate.components.merge.feedback_input import check_export
        from tiergate.taxonomy import load_taxonomy

        check_export(load_taxonomy(), Path(feedback_data).expanduser(), feedback_data)
    previous_model = resolve_previous_model(previous_model, profile)
    run_dir = (RUNS / run_id).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    outputs = run_local(
        run_dir,
        profile,
        categories,
        base_model,
        run_id,
        counts,
        runner=runner,
        public_data=public_data,
        previous_model=previous_model,
        feedback_data=feedback_data,
    )
    _collect_run_results(run_dir, outputs)
    gate = load_gate(run_dir)
    typer.echo(
        f"pipeline finished in {outputs['elapsed_s']:.0f}s; gate {gate.decision.upper()} "
        f"(macro F1 {gate.summary.macro_f1}), results in {RUNS / run_id} (runs/latest)"
    )
    if outputs["promoted"]:
        from tiergate.components.promote.gitops import history
        from tiergate.profiles import load_profile

        typer.echo(f"promoted: Triton model repository at {RUNS / run_id / 'model_repository'}")
        settings = load_profile(profile).promote
        latest = next((entry for entry in history(settings) if entry["version"]), None)
        if latest is not None:
            typer.echo(
                f"GitOps: {settings.repo_url} @ {latest['commit'][:12]} sets {settings.values_path} to "
                f"{latest['version']} ({latest['storageUri']})"
            )
    else:
        typer.echo("NOT PROMOTED: " + "; ".join(rule.rule for rule in gate.failures[:8]))


def checked_location(flag: str, value: str) -> str:
    """A run-form location from a flag, checked as the pipeline checks it; a local one must be a folder."""
    from tiergate.components.generate.public_step import check_location

    location = check_location(value, flag.removeprefix("--"))
    if location and "://" not in location and not Path(location).expanduser().is_dir():
        raise TiergateError(f"{flag} {location}: no such folder")
    return location


PROMOTED = "promoted"


def resolve_previous_model(value: str, profile: str) -> str:
    """`promoted` → the storageUri the profile's GitOps repository serves now ("" when nothing was promoted yet)."""
    if value.strip() != PROMOTED:
        if value and "://" not in value and not Path(value).expanduser().is_dir():
            raise TiergateError(f"--previous-model {value}: neither a storageUri, a repository folder nor '{PROMOTED}'")
        return value.strip()
    from tiergate.components.promote.gitops import history
    from tiergate.profiles import load_profile

    settings = load_profile(profile).promote
    try:
        latest = next((entry for entry in history(settings) if entry["version"]), None)
    except TiergateError as error:
        typer.echo(f"previous model: none ({error})")
        return ""
    if latest is None:
        typer.echo(f"previous model: none promoted yet in {settings.repo_url}; this run is a first model")
        return ""
    typer.echo(f"previous model: {latest['version']} ({latest['storageUri']})")
    return str(latest["storageUri"])


@app.command("submit")
def submit(
    host: Annotated[str, typer.Option(help="KFP API endpoint, e.g. https://kfp.example.com/pipeline.")],
    package: Annotated[Path | None, typer.Option(help="Compiled YAML (default: pipelines/compiled/tiergate.yaml).")] = None,
    experiment: Annotated[str, typer.Option(help="KFP experiment name (created if missing).")] = "tiergate",
    run_name: Annotated[str | None, typer.Option(help="Run name shown in the dashboard.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Pipeline parameter KEY=VALUE (repeatable).")] = None,
    token: Annotated[str | None, typer.Option(envvar="KFP_TOKEN", help="Bearer token (or $KFP_TOKEN).")] = None,
    service_account: Annotated[
        str, typer.Option(help="Kubernetes service account the run's pods use (manifests/kfp/rbac.yaml).")
    ] = "tiergate-pipeline",
    namespace: Annotated[str | None, typer.Option(help="Profile namespace (multi-user Kubeflow); omit for single-user.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each API answer (connect: at most 10).", min=1)] = 60.0,
) -> None:
    """Launch the compiled pipeline on a Kubeflow Pipelines cluster; prints the run id."""
    from tiergate.pipelines.runner import COMPILED
    from tiergate.pipelines.submit import Submission, parse_params
    from tiergate.pipelines.submit import submit as submit_run

    submission = Submission(
        host=host,
        package=package or COMPILED,
        experiment=experiment,
        run_name=run_name,
        arguments=parse_params(param or []),
        token=token,
        service_account=service_account,
        namespace=namespace,
        timeout_s=timeout,
    )
    run_id = submit_run(submission)
    typer.echo(f"submitted run {run_id} (experiment {experiment!r}, service account {service_account})")
