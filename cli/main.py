"""Entry point: `tiergate --help`. User mistakes print one line and exit 2; nothing prints a traceback
unless TIERGATE_DEBUG=1 (an unexpected error is one line too, exit 1)."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from tiergate import __version__
from tiergate.cli import (
    data_cmd,
    feedback_cmd,
    gateway_cmd,
    model_cmd,
    operator_cmd,
    pipeline_cmd,
    promote_cmd,
    repository_cmd,
    review_cmd,
    serve_cmd,
    taxonomy_cmd,
)
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
app.command("gateway")(gateway_cmd.gateway)
app.command("classify")(serve_cmd.classify)
app.command("demo")(serve_cmd.demo)
app.command("regression")(serve_cmd.regression)
app.command("publish")(promote_cmd.publish)
app.add_typer(promote_cmd.app, name="promote")
app.add_typer(repository_cmd.app, name="repository")
app.add_typer(operator_cmd.app, name="operator")
app.command("status")(operator_cmd.status)
app.add_typer(feedback_cmd.app, name="feedback")
app.command("review")(review_cmd.review)


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


DEBUG_ENV = "TIERGATE_DEBUG"


def _one_line(error: BaseException, limit: int = 500) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main() -> None:
    """Run the CLI: a user error is one `error:` line and exit 2; anything unexpected one line and exit 1.

    A traceback is shown only with TIERGATE_DEBUG=1.
    """
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        app()
    except TiergateError as error:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as error:  # a defect, or a failure nothing turned into a TiergateError yet
        if debug:
            traceback.print_exc()
        typer.echo(
            f"error: unexpected {type(error).__name__}: {_one_line(error)} (set {DEBUG_ENV}=1 for the traceback)", err=True
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
