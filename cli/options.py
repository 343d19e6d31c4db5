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
