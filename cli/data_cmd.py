"""`tiergate data`: generate, import and merge datasets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from tiergate.cli.options import OverwriteOption, ProfileOption, TaxonomyOption
from tiergate.dataset_adapters import DEFAULT_MAX_BAD_FRACTION, IMPORT_REPORT
from tiergate.errors import InputDataError
from tiergate.taxonomy import Taxonomy

app = typer.Typer(help="Generate, import and merge training data.", no_args_is_help=True)


@app.command("generate")
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output root; one sub-folder per category.")],
    profile: ProfileOption = "local",
    category: Annotated[list[str] | None, typer.Option("--category", "-c", help="Only these categories (repeatable).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="LLM response cache (resumable).")] = None,
    counts: Annotated[str, typer.Option(help="Per-category count overrides, e.g. positives=100,hard_negatives=50.")] = "",
    overwrite: OverwriteOption = False,
    taxonomy: TaxonomyOption = None,
) -> None:
    """Generate positives, hard negatives, innocuous and perturbation examples per category."""
    from tiergate.components.generate.step import categories_to_generate, generate_category, make_generator, parse_counts
    from tiergate.errors import OutputError
    from tiergate.profiles import load_profile
    from tiergate.taxonomy import load_taxonomy

    loaded = load_taxonomy(taxonomy)
    resolved = load_profile(profile)
    names = categories_to_generate(loaded, resolved, category or [])
    overrides = parse_counts(counts)
    existing = [name for name in names if (out / name).is_dir() and any((out / name).iterdir())]
    if existing and not overwrite:  # refuse before anything is generated (an LLM generator costs money)
        raise OutputError(f"{out}: {', '.join(existing)} already generated; pass --overwrite to replace")
    generator = make_generator(loaded, resolved, cache_dir or out / ".cache")
    for name in names:
        manifest = generate_category(
            loaded, resolved, name, out / name, generator=generator, counts_override=overrides, overwrite=overwrite
        )
        typer.echo(f"{name}: {manifest.counts['records']} records {manifest.counts['by_kind']}")
        for note in manifest.notes:
            if not note.startswith("SMOKE-TEST"):
                typer.echo(f"  ! {note}")
    if generator.smoke_test:
        typer.echo("note: offline generator output is SMOKE-TEST data, not a real moderation corpus")


@app.command("import")
def import_(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder.")],
    path: Annotated[Path | None, typer.Argument(help="CSV, JSONL or Parquet file of labelled texts (or use --dataset).")] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", "-d", help="A public set's adapter (see `tiergate data datasets`), or 'all' for every train set."
        ),
    ] = None,
    source: Annotated[
        Path | None, typer.Option("--source", help="With --dataset: the set's folder (for 'all': the folder holding the sets).")
    ] = None,
    max_bad_fraction: Annotated[
        float, typer.Option(help="Fail when more than this fraction of a file's or set's rows is bad (bad rows are reported).")
    ] = DEFAULT_MAX_BAD_FRACTION,
    text_column: Annotated[str, typer.Option(help="Column with the text.")] = "text",
    labels_column: Annotated[str, typer.Option(help="Column with category names (separated string or list).")] = "labels",
    context_column: Annotated[str | None, typer.Option(help="Column with AUDIENCE/SURFACE; optional.")] = "context",
    kind_column: Annotated[str | None, typer.Option(help="Column with the record kind; default from labels.")] = None,
    label_separator: Annotated[str, typer.Option(help="Separator inside the labels column.")] = ",",
    default_context: Annotated[str, typer.Option(help="Context for rows without one.")] = "general/message",
    file_format: Annotated[str, typer.Option("--format", help="auto, csv, jsonl or parquet.")] = "auto",
    overwrite: OverwriteOption = False,
    taxonomy: TaxonomyOption = None,
) -> None:
    """Import labelled data: a user's FILE with a column mapping, or a public set (--dataset) in its original
    format. Good rows are kept; bad rows are listed by file and line in import_report.json. --out is written
    whole or not at all; a failed import leaves it as it was and keeps its report beside it."""
    from tiergate.components.generate.importers import ColumnMapping, import_file
    from tiergate.taxonomy import load_taxonomy

    if not 0.0 <= max_bad_fraction <= 1.0:
        raise InputDataError(f"--max-bad-fraction {max_bad_fraction} must be between 0 and 1")
    loaded = load_taxonomy(taxonomy)
    if dataset is not None:
        if path is not None:
            raise InputDataError("give either a FILE or --dataset, not both")
        mapping_options = (text_column, labels_column, context_column, kind_column, label_separator, default_context, file_format)
        if mapping_options != ("text", "labels", "context", None, ",", "general/message", "auto"):
            raise InputDataError(
                "--text-column, --labels-column, --format etc. describe a FILE; a --dataset's adapter says all that"
            )
        _import_public_set(loaded, dataset, source, out, max_bad_fraction, overwrite)
        return
    if path is None:
        raise InputDataError("nothing to import: give a FILE, or --dataset NAME --source DIR")
    mapping = ColumnMapping(text_column, labels_column, context_column, kind_column, label_separator, default_context)
    if not path.is_file():
        raise InputDataError(f"import file not found: {path}")
    with _staged_import(out, overwrite, path) as staging:
        manifest = import_file(loaded, path, staging, mapping, file_format, max_bad_fraction)
    bad = manifest.counts.get("bad_rows", 0)
    typer.echo(
        f"imported {manifest.counts['records']} records into {out}"
        + (f"; {bad} bad row(s) in {out / IMPORT_REPORT}" if bad else "")
    )


def failed_report_path(out: Path) -> Path:
    """Where a failed import's report is kept: beside --out, which stays as it was."""
    return out.parent / f"{out.name}.{IMPORT_REPORT}"


@contextmanager
def _staged_import(out: Path, overwrite: bool, source: Path) -> Iterator[Path]:
    """Import into a staging folder that replaces --out whole on success (tiergate.outputs.atomic_output:
    a non-empty --out needs --overwrite, a concurrent writer is refused, --out may not overlap the source).
    On failure --out is untouched and the import report, if written, is kept at `failed_report_path`."""
    from tiergate.outputs import atomic_output

    kept = failed_report_path(out)
    with atomic_output(out, overwrite, inputs=[source]) as staging:
        try:
            yield staging
        except InputDataError as error:
            report = staging / IMPORT_REPORT
            if not report.is_file():
                raise
            kept.write_bytes(report.read_bytes())
            raise InputDataError(f"{error} (full report: {kept}; {out} left as it was)") from None
        kept.unlink(missing_ok=True)  # a failed attempt's report would contradict the new output


def _import_public_set(
    taxonomy: Taxonomy, dataset: str, source: Path | None, out: Path, max_bad_fraction: float, overwrite: bool
) -> None:
    """`--dataset NAME --source DIR` (one set) or `--dataset all --source ROOT` (every train set found there)."""
    from tiergate.components.generate.importers import EVALUATION_DATASET, import_dataset, import_public
    from tiergate.dataset_adapters import load_adapter

    if source is None:
        raise InputDataError("--dataset needs --source: the set's folder (for 'all': the folder holding the sets)")
    if not source.is_dir():
        raise InputDataError(f"source folder not found: {source}")
    adapter = None if dataset == "all" else load_adapter(dataset, taxonomy)
    with _staged_import(out, overwrite, source) as staging:
        if adapter is None:
            manifest = import_public(taxonomy, source, staging, max_bad_fraction=max_bad_fraction)
        else:
            manifest = import_dataset(taxonomy, adapter, source, staging, max_bad_fraction=max_bad_fraction)
    for name, counts in manifest.counts["by_dataset"].items():
        positives = {category: state["positive"] for category, state in counts["by_category"].items() if state.get("positive")}
        typer.echo(f"{name}: {counts['kept']} kept, {counts['bad']} bad, {counts['skipped']} skipped; positives {positives}")
    typer.echo(f"imported {manifest.counts['records']} records into {out} (report: {out / IMPORT_REPORT})")
    for note in manifest.notes:
        typer.echo(f"note: {note}")
    if manifest.dataset == EVALUATION_DATASET:
        typer.echo(f"note: {dataset} is an evaluation-only set: imported for inspection, merge refuses it for training")


@app.command("datasets")
def datasets(taxonomy: TaxonomyOption = None) -> None:
    """List the public data set adapters: role, licence, categories covered and given positives."""
    from tiergate.dataset_adapters import load_adapters
    from tiergate.taxonomy import load_taxonomy

    for adapter in load_adapters(load_taxonomy(taxonomy)):
        typer.echo(f"{adapter.name}  [{adapter.role}]  {adapter.licence}  — {adapter.title}")
        typer.echo(f"    covers: {', '.join(adapter.covers) or '-'}; positives: {', '.join(adapter.positive_categories) or '-'}")
        typer.echo(f"    download: {adapter.source}")


@app.command("merge")
def merge(
    inputs: Annotated[list[Path], typer.Argument(help="Dataset folders, or a generate output root holding them.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for splits, phases and the report.")],
    previous_model: Annotated[
        Path | None, typer.Option(help="A served model repository: also quarantine negatives it confidently flags.")
    ] = None,
    overwrite: OverwriteOption = False,
    profile: ProfileOption = "local",
    taxonomy: TaxonomyOption = None,
) -> None:
    """Dedupe, fold multi-labels, screen negatives, split by text hash, build phase sets and a report."""
    from tiergate.artifacts import DATASET_MANIFEST, DATASET_REPORT_MD
    from tiergate.components.merge.step import merge_datasets
    from tiergate.profiles import load_profile
    from tiergate.taxonomy import load_taxonomy

    folders: list[Path] = []
    for path in inputs:
        if (path / DATASET_MANIFEST).is_file():
            folders.append(path)
        elif path.is_dir():
            folders += sorted(child for child in path.iterdir() if (child / DATASET_MANIFEST).is_file())
        else:
            raise InputDataError(f"not a dataset folder: {path}")
    from tiergate.components.merge.screen import KeywordScreener, PreviousModelScreener
    from tiergate.store import previous_repository

    loaded, resolved = load_taxonomy(taxonomy), load_profile(profile)
    screeners: list = [KeywordScreener(loaded)]  # type: ignore[type-arg]
    # The previous model is verified (manifest, file hashes, gate) before it screens anything: a tampered
    # copy would otherwise decide which negatives are trained on.
    with previous_repository(str(previous_model or ""), resolved.publish) as repository:
        if repository is not None:
            screeners.append(PreviousModelScreener(loaded, repository, resolved.merge.previous_model_min_score))
        manifest = merge_datasets(loaded, resolved, folders, out, screeners=screeners, overwrite=overwrite)
    counts = manifest.counts
    typer.echo(f"splits {counts['splits']} phases {counts['phases']} quarantined {counts['quarantined']}")
    typer.echo(f"report: {out / DATASET_REPORT_MD}")
    for note in manifest.notes:
        typer.echo(f"note: {note}")
