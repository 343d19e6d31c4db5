"""KFP wrapper for the merge step. The body is a thin call into the library; imports live inside
the function because KFP ships only the function's source to the container."""

from typing import List  # noqa: UP035 (KFP reads typing.List for list-typed parameters)

from kfp.dsl import Dataset, Input, Markdown, Output


def merge(
    profile: str,
    generated: Input[List[Dataset]],  # noqa: UP006
    merged: Output[Dataset],
    report: Output[Markdown],
    config_digest: str = "",
) -> None:
    """Fold, dedupe, screen, split and phase the generated datasets.

    `config_digest` keys KFP's cache on the config's content; the step refuses another config.
    """
    import shutil
    from pathlib import Path

    from tiergate.artifacts import DATASET_REPORT_MD
    from tiergate.components.merge.step import merge_datasets
    from tiergate.config_digest import check_config_digest
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    taxonomy, resolved = load_taxonomy(), load_profile(profile)
    check_config_digest(config_digest, taxonomy, resolved)
    manifest = merge_datasets(taxonomy, resolved, [Path(item.path) for item in generated], Path(merged.path), overwrite=True)
    shutil.copyfile(Path(merged.path) / DATASET_REPORT_MD, report.path)
    merged.metadata.update(
        {"dataset_sha256": manifest.dataset_sha256, **{f"{k}_records": v for k, v in manifest.counts["splits"].items()}}
    )
