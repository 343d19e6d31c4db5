"""`tiergate publish` and `tiergate promote`: from a gated model repository to a GitOps commit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tiergate.cli.options import ProfileOption

app = typer.Typer(help="Promote by GitOps: apply a gated model, roll back, list history.", no_args_is_help=True)


def publish(
    repository: Annotated[Path, typer.Argument(help="Triton model repository (with repository.json).")],
    profile: ProfileOption = "local",
) -> None:
    """Upload a verified, gated model repository to the store under <model>/<version>/<digest>; never overwritten.

    Refused (exit 2, store untouched) unless the repository's files match its manifest and its gate record
    passed under the configured policy on exactly the packaged model, thresholds and tokenizer.
    """
    from tiergate.components.publish.step import publish_repository

    resolved, policy = _profile_and_policy(profile)
    result = publish_repository(repository, resolved.publish, policy)
    typer.echo(json.dumps(result))


def _profile_and_policy(profile: str) -> tuple[Any, Any]:
    """The resolved profile and the gate policy it and the taxonomy configure."""
    from tiergate.gate import configured_policy
    from tiergate.profiles import load_profile
    from tiergate.taxonomy import load_taxonomy

    resolved = load_profile(profile)
    return resolved, configured_policy(load_taxonomy(), resolved)


@app.command("apply")
def apply(
    evaluation: Annotated[Path, typer.Option(help="Evaluation folder with gate.json.")],
    repository: Annotated[Path, typer.Option(help="The packaged model repository.")],
    run_id: Annotated[str, typer.Option(help="Run id recorded in the commit message.")] = "manual",
    profile: ProfileOption = "local",
) -> None:
    """Verify, publish (if needed) and commit the new version to the GitOps values; refused unless the gate passed.

    Everything is verified before anything is written: a refused model never reaches the store.
    """
    from tiergate.components.promote.step import check_local, promote
    from tiergate.components.publish.step import publish_repository
    from tiergate.gate import load_gate
    from tiergate.trust import check_name

    check_name("model version", run_id)  # it goes into the audited commit message: one line, no injection
    resolved, policy = _profile_and_policy(profile)
    check_local(load_gate(evaluation), repository, policy)
    published = publish_repository(repository, resolved.publish, policy)
    result = promote(resolved.promote, resolved.publish, evaluation, repository, published, run_id, policy)
    state = "committed" if result["changed"] else "already promoted (no-op)"
    typer.echo(f"{published['version']}: {state} at {result['commit'][:12]} on {result['branch']}")


@app.command("rollback")
def rollback(
    to: Annotated[str, typer.Option("--to", help="An earlier promoted version.")],
    profile: ProfileOption = "local",
) -> None:
    """Restore an earlier version's model values as a new GitOps commit, after re-verifying its stored copy and gate."""
    from tiergate.components.promote.step import rollback as rollback_to
    from tiergate.profiles import load_profile

    resolved = load_profile(profile)
    result = rollback_to(resolved.promote, resolved.publish, to)
    typer.echo(f"rolled back to {to}: {'committed ' + result['commit'][:12] if result['changed'] else 'already current (no-op)'}")


@app.command("history")
def history(
    profile: ProfileOption = "local", as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False
) -> None:
    """Promoted versions, newest first, from the GitOps repository's history."""
    from tiergate.components.promote.gitops import history as read_history
    from tiergate.profiles import load_profile

    for entry in read_history(load_profile(profile).promote):
        if as_json:
            typer.echo(json.dumps(entry))
        elif entry["version"]:
            typer.echo(
                f"{entry['date'][:19]}  {entry['version']:<24} {str(entry['digest'])[:12]}  "
                f"{entry['commit'][:12]}  {entry['subject']}"
            )
