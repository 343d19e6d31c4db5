"""`tiergate taxonomy`: inspect and validate the taxonomy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiergate.cli.options import TaxonomyOption
from tiergate.taxonomy import load_taxonomy

app = typer.Typer(help="Inspect and validate the taxonomy (categories, order, tiers, gates).", no_args_is_help=True)


@app.command("show")
def show(
    taxonomy: TaxonomyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {categories: [{name, tier}], sha256} as JSON.")] = False,
) -> None:
    """Print the categories in model output order with their tiers, and the label hash."""
    loaded = load_taxonomy(taxonomy)
    if as_json:
        typer.echo(json.dumps(loaded.summary(), indent=2))
        return
    for index, category in enumerate(loaded.categories):
        tier = loaded.tiers[category.tier]
        low, high = loaded.threshold_bounds(category.name)
        flags = " (optional)" if category.optional else ""
        typer.echo(
            f"{index:2d}  {category.name:<20} T{category.tier} {tier.name:<18} gate F1>={tier.f1_gate:.2f}"
            f"  thresholds [{low:.2f}, {high:.2f}]  pos_weight cap {tier.pos_weight_cap:g}{flags}"
        )
    typer.echo(f"sha256 {loaded.labels_sha256}")


@app.command("validate")
def validate(path: Annotated[Path | None, typer.Argument(help="Taxonomy YAML to check.")] = None) -> None:
    """Validate a taxonomy file; prints the problem (naming the key) and exits 2 if it is invalid."""
    loaded = load_taxonomy(path)
    typer.echo(f"ok: {len(loaded.labels)} categories in {len(loaded.tiers)} tiers, sha256 {loaded.labels_sha256}")
