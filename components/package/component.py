"""KFP wrapper for packaging: a gated model becomes a Triton model repository (refused unless the gate passed)."""

from kfp.dsl import Artifact, Input, Model, Output


def package(
    profile: str,
    onnx_model: Input[Model],
    evaluation: Input[Artifact],
    model_version: str,
    run_name: str,
    model_repository: Output[Artifact],
) -> str:
    """Build the repository; returns its content digest. Verifies the gate and the judged digests first."""
    from pathlib import Path

    from tiergate.components.package.repository import build_repository
    from tiergate.gate import configured_policy
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    version = model_version or run_name
    taxonomy, resolved = load_taxonomy(), load_profile(profile)
    manifest = build_repository(
        taxonomy,
        resolved.serving,
        Path(onnx_model.path),
        Path(evaluation.path),
        Path(model_repository.path),
        version,
        configured_policy(taxonomy, resolved),
    )
    model_repository.metadata.update({"model_version": version, "digest": manifest["digest"], "variant": manifest["variant"]})
    return str(manifest["digest"])
