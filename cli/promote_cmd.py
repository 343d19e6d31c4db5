"""`tiergate publish` and `tiergate promote`: from a gated model repository to a GitOps commit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiergate.cli.options import ProfileOption

app = typer.Typer(help="Promote by GitOps: apply a gated model, roll back, list history.", no_args_is_help=True)


def publish(
    repository: Annotated[Path, typer.Argument(help="Triton model repository (with repository.json).")],
    profile: ProfileOption = "local",
) -> None:
    """Upload a model repository to the profile's store under <model>/<version>/<digest>, verified, never overwritten."""
    from tiergate.components.publish.step import publish_repository
    from tiergate.profiles import load_profile

    result = publish_repository(repository, load_profile(profile).publish)
    typer.echo(json.dumps(result))


@app.command("apply")
def apply(
    evaluation: Annotated[Path, typer.Option(help="Evaluation folder with gate.json.")],
    repository: Annotated[Path, typer.Option(help="The packaged model repository.")],
    run_id: Annotated[str, typer.Option(help="Run id recorded in the commit message.")] = "manual",
    profile: ProfileOption = "local",
) -> None:
    """Publish (if needed) and commit the new version to the GitOps values; refused unless the gate passed."""
    from tiergate.components.promote.step import promote
    from tiergate.components.publish.step import publish_repository
    from tiergate.profiles import load_profile

    resolved = load_profile(profile)
    published = publish_repository(repository, resolved.publish)
    result = promote(resolved.promote, evaluation, repository, published, run_id)
    state = "committed" if result["changed"] else "already promoted (no-op)"
    typer.echo(f"{published['version']}: {state} at {result['commit'][:12]} on {result['branch']}")


@app.command("rollback")
def rollback(
    to: Annotated[str, typer.Option("--to", help="An earlier promoted version.")],
    profile: ProfileOption = "local",
) -> None:
    """Restore an earlier version's model values as a new GitOps commit."""
    from tiergate.components.promote.step import rollback as rollback_to
    from tiergate.profiles import load_profile

    result = rollback_to(load_profile(profile).promote, to)
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
