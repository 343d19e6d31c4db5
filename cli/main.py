"""Entry point: `tiergate --help`. User mistakes print one line and exit 2, never a traceback."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tiergate import __version__
from tiergate.cli import data_cmd, model_cmd, pipeline_cmd, promote_cmd, repository_cmd, serve_cmd, taxonomy_cmd
from tiergate.errors import TiergateError
from tiergate.progress import setup_logging

app = typer.Typer(
    help="tiergate: build, gate and serve a tiered multi-label moderation classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(taxonomy_cmd.app, name="taxonomy")
app.add_typer(data_cmd.app, name="data")
app.command("train")(model_cmd.train)
app.command("export")(model_cmd.export)
app.command("evaluate")(model_cmd.evaluate)
app.add_typer(pipeline_cmd.app, name="pipeline")
app.command("serve")(serve_cmd.serve)
app.command("classify")(serve_cmd.classify)
app.command("demo")(serve_cmd.demo)
app.command("regression")(serve_cmd.regression)
app.command("publish")(promote_cmd.publish)
app.add_typer(promote_cmd.app, name="promote")
app.add_typer(repository_cmd.app, name="repository")


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    setup_logging(verbose)


def main() -> None:
    try:
        app()
    except TiergateError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
