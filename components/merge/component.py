"""KFP wrapper for the merge step. The body is a thin call into the library; imports live inside
the function because KFP ships only the function's source to the container."""

from typing import List  # noqa: UP035 (KFP reads typing.List for list-typed parameters)

from kfp.dsl import Dataset, Input, Markdown, Output


def import_feedback_data(profile: str, feedback_data: str, feedback: Output[Dataset], config_digest: str = "") -> None:
    """Reviewed items from the run's feedback-data location (a folder `tiergate feedback export` wrote, at a
    folder, pvc://, s3:// or gs:// location; empty: none), checked as an export before merge trusts its labels."""
    from pathlib import Path

    from tiergate.components.merge.feedback_input import stage_feedback
    from tiergate.config_digest import check_config_digest
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    taxonomy, resolved = load_taxonomy(), load_profile(profile)
    check_config_digest(config_digest, taxonomy, resolved)
    manifest = stage_feedback(taxonomy, resolved, feedback_data, Path(feedback.path), overwrite=True)
    feedback.metadata.update({"records": manifest.counts.get("records", 0), "dataset_sha256": manifest.dataset_sha256})


def merge(
    profile: str,
    generated: Input[List[Dataset]],  # noqa: UP006
    public: Input[Dataset],
    feedback: Input[Dataset],
    merged: Output[Dataset],
    report: Output[Markdown],
    previous_model: str = "",
    config_digest: str = "",
) -> None:
    """Fold, dedupe, screen, cap, split and phase the generated, public and reviewed (feedback) datasets together.

    Reviewers' labels win over any other source's on the same text and context (reported per category).

    `previous_model` (a published storageUri; empty: none) screens the generated negatives with the
    previously promoted model: a negative it confidently flags is quarantined (a poisoned seed).
    `config_digest` keys KFP's cache on the config's content; the step refuses another config.
    """
    import shutil
    from pathlib import Path

    from tiergate.artifacts import DATASET_REPORT_MD
    from tiergate.components.merge.screen import KeywordScreener, PreviousModelScreener, Screener
    from tiergate.components.merge.step import merge_datasets
    from tiergate.config_digest import check_config_digest
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.store import previous_repository
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    taxonomy, resolved = load_taxonomy(), load_profile(profile)
    check_config_digest(config_digest, taxonomy, resolved)
    inputs = [Path(item.path) for item in generated] + [Path(public.path), Path(feedback.path)]
    with previous_repository(previous_model, resolved.publish) as repository:
        screeners: list[Screener] = [KeywordScreener(taxonomy)]
        if repository is not None:
            screeners.append(PreviousModelScreener(taxonomy, repository, resolved.merge.previous_model_min_score))
        manifest = merge_datasets(taxonomy, resolved, inputs, Path(merged.path), screeners=screeners, overwrite=True)
    shutil.copyfile(Path(merged.path) / DATASET_REPORT_MD, report.path)
    merged.metadata.update(
        {"dataset_sha256": manifest.dataset_sha256, **{f"{k}_records": v for k, v in manifest.counts["splits"].items()}}
    )
