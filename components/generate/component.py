"""KFP wrappers for the data steps. Bodies are thin calls into the library; imports live inside
the function because KFP ships only the function's source to the container."""

from typing import List  # noqa: UP035 (KFP reads typing.List for list-typed parameters)

from kfp.dsl import Dataset, Input, Markdown, Output


def list_categories(profile: str, categories: str) -> List[str]:  # noqa: UP006
    """The categories to generate: all, in taxonomy order, or a validated comma-separated subset."""
    from tiergate.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    wanted = [name.strip() for name in categories.split(",") if name.strip()]
    for name in wanted:
        taxonomy.category(name)  # unknown name -> clear error
    return [name for name in taxonomy.labels if not wanted or name in wanted]


def generate(profile: str, category: str, cache_dir: str, counts: str, generated: Output[Dataset]) -> None:
    """One category's dataset: positives, hard negatives, innocuous, perturbations."""
    from pathlib import Path

    from tiergate.components.generate.step import generate_category, parse_counts
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    manifest = generate_category(
        load_taxonomy(),
        load_profile(profile),
        category,
        Path(generated.path),
        cache_dir=Path(cache_dir) if cache_dir else None,
        counts_override=parse_counts(counts),
    )
    generated.metadata.update(
        {
            "category": category,
            "records": manifest.counts["records"],
            "smoke_test": manifest.smoke_test,
            "dataset_sha256": manifest.dataset_sha256,
        }
    )


def merge(profile: str, generated: Input[List[Dataset]], merged: Output[Dataset], report: Output[Markdown]) -> None:  # noqa: UP006
    """Fold, dedupe, screen, split and phase the generated datasets."""
    import shutil
    from pathlib import Path

    from tiergate.components.merge.step import merge_datasets
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    manifest = merge_datasets(load_taxonomy(), load_profile(profile), [Path(item.path) for item in generated], Path(merged.path))
    shutil.copyfile(Path(merged.path) / "report.md", report.path)
    merged.metadata.update(
        {"dataset_sha256": manifest.dataset_sha256, **{f"{k}_records": v for k, v in manifest.counts["splits"].items()}}
    )
