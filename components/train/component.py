"""KFP wrapper for one training phase (the pipeline runs it three times, warm-starting)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train(
    profile: str,
    phase: str,
    base_model: str,
    data: Input[Dataset],
    checkpoint: Output[Model],
    metrics: Output[Metrics],
    init: Input[Model] = None,
    config_digest: str = "",
) -> None:  # type: ignore[assignment]
    """Train `phase` on the merged dataset; `init` is the previous phase's checkpoint.

    `config_digest` keys KFP's cache on the config's content; the step refuses another config
    (the GPU image built from another commit than the CPU image).
    """
    from pathlib import Path

    from tiergate.components.train.step import train_phase
    from tiergate.config_digest import check_config_digest
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    taxonomy = load_taxonomy()
    check_config_digest(config_digest, taxonomy, load_profile(profile))
    overrides = {"train": {"base_model": base_model}} if base_model else None
    info = train_phase(
        taxonomy,
        load_profile(profile, overrides),
        Path(data.path),
        phase,
        Path(checkpoint.path),
        init_from=Path(init.path) if init is not None else None,
        overwrite=True,  # KFP owns the output path; a retried task replaces its own partial output
    )
    for key, value in info.best.items():
        if key.startswith("eval_") and not key.startswith("eval_f1_") and isinstance(value, int | float):
            metrics.log_metric(f"{phase}_{key.removeprefix('eval_')}", float(value))
    checkpoint.metadata.update({"phase": phase, "base_model": info.base_model, "taxonomy_sha256": info.taxonomy_sha256})
