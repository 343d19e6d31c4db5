"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

TaxonomyOption = Annotated[
    Path | None, typer.Option("--taxonomy", help="Taxonomy YAML (default: config/taxonomy.yaml).", dir_okay=False)
]
ProfileOption = Annotated[str, typer.Option("--profile", "-p", help="Profile name in config/profiles, or a YAML path.")]
OverwriteOption = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace a non-empty --out folder (swapped in only once the new output is complete)."),
]
HeaderOption = Annotated[
    list[str] | None,
    typer.Option(
        "--header",
        "-H",
        help="Header sent with every call, 'Name: value' (repeatable), e.g. 'Host: tiergate.models.example.com' "
        "to route through a KServe ingress, or 'Authorization: Bearer ...'.",
    ),
]
CaFileOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-file", help="PEM CA bundle for an https:// endpoint's certificate (default: the public roots).", dir_okay=False
    ),
]
InsecureOption = Annotated[
    bool, typer.Option("--insecure", help="https:// without certificate verification (HTTP only; prints a warning).")
]
