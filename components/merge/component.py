"""KFP wrapper for the merge step. The body is a thin call into the library; imports live inside
the function because KFP ships only the function's source to the container."""

from typing import List  # noqa: UP035 (KFP reads typing.List for list-typed parameters)

from kfp.dsl import Dataset, Input, Markdown, Output


def merge(profile: str, generated: Input[List[Dataset]], merged: Output[Dataset], report: Output[Markdown]) -> None:  # noqa: UP006
    """Fold, dedupe, screen, split and phase the generated datasets."""
    import shutil
    from pathlib import Path

    from tiergate.artifacts import DATASET_REPORT_MD
    from tiergate.components.merge.step import merge_datasets
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    manifest = merge_datasets(load_taxonomy(), load_profile(profile), [Path(item.path) for item in generated], Path(merged.path))
    shutil.copyfile(Path(merged.path) / DATASET_REPORT_MD, report.path)
    merged.metadata.update(
        {"dataset_sha256": manifest.dataset_sha256, **{f"{k}_records": v for k, v in manifest.counts["splits"].items()}}
    )
