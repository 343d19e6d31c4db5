"""KFP wrappers for the generate step (merge's is `tiergate.components.merge.component`). Bodies are
thin calls into the library; imports live inside the function because KFP ships only its source."""

from typing import List  # noqa: UP035 (KFP reads typing.List for list-typed parameters)

from kfp.dsl import Dataset, Output


def list_categories(profile: str, categories: str, config_digest: str = "") -> List[dict]:  # noqa: UP006
    """The categories to generate: all, in taxonomy order, or a validated comma-separated subset.

    The profile is loaded and its generation counts resolved here, so a bad profile fails once,
    before the pipeline fans out one generate task per category. Each item is
    {"category": name, "config_digest": digest}: the digest rides with the loop item because
    kfp.local (2.17) replaces every other task output read inside a ParallelFor by the item.
    """
    from tiergate.components.generate.step import categories_to_generate
    from tiergate.profiles import load_profile
    from tiergate.taxonomy import load_taxonomy

    wanted = [name.strip() for name in categories.split(",") if name.strip()]
    chosen = categories_to_generate(load_taxonomy(), load_profile(profile), wanted)
    return [{"category": name, "config_digest": config_digest} for name in chosen]


def generate(
    profile: str, category: str, cache_dir: str, counts: str, generated: Output[Dataset], config_digest: str = ""
) -> None:
    """One category's dataset: positives, hard negatives, innocuous, perturbations.

    `config_digest` keys KFP's cache on the config's content; the step refuses another config.
    """
    from pathlib import Path

    from tiergate.components.generate.step import generate_category, parse_counts
    from tiergate.config_digest import check_config_digest
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    taxonomy, resolved = load_taxonomy(), load_profile(profile)
    check_config_digest(config_digest, taxonomy, resolved)
    manifest = generate_category(
        taxonomy,
        resolved,
        category,
        Path(generated.path),
        cache_dir=Path(cache_dir) if cache_dir else None,
        counts_override=parse_counts(counts),
        overwrite=True,  # KFP owns the output path; a retried task replaces its own partial output
    )
    generated.metadata.update(
        {
            "category": category,
            "records": manifest.counts["records"],
            "smoke_test": manifest.smoke_test,
            "dataset_sha256": manifest.dataset_sha256,
        }
    )


def import_public_data(profile: str, public_data: str, public: Output[Dataset], config_digest: str = "") -> None:
    """Real labelled sets from the run's public-data location (a folder, pvc://, s3:// or gs://; empty: none).

    `public` holds the training sets for merge (partial labels: each set knows only its own categories);
    the evaluation-only sets at the same location are read by evaluate and never trained on.
    """
    from pathlib import Path

    from tiergate.components.generate.public_step import import_public_location
    from tiergate.config_digest import check_config_digest
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    taxonomy, resolved = load_taxonomy(), load_profile(profile)
    check_config_digest(config_digest, taxonomy, resolved)
    manifest = import_public_location(taxonomy, resolved, public_data, Path(public.path), overwrite=True)
    public.metadata.update({"records": manifest.counts["records"], "dataset_sha256": manifest.dataset_sha256})
