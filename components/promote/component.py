"""KFP wrapper for GitOps promotion (never cached: it has an effect outside the pipeline)."""

from kfp.dsl import Artifact, Input


def promote(
    profile: str, evaluation: Input[Artifact], model_repository: Input[Artifact], uri: str, digest: str, version: str, run_id: str
) -> str:
    """Commit the new version to the GitOps repository's values; returns the commit sha."""
    import json
    from pathlib import Path

    from tiergate.artifacts import REPOSITORY_MANIFEST
    from tiergate.components.promote.step import promote as promote_model
    from tiergate.gate import configured_policy
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    resolved = load_profile(profile)
    manifest = json.loads((Path(model_repository.path) / REPOSITORY_MANIFEST).read_text())
    published = {"uri": uri, "digest": digest, "version": version, "model_name": manifest["model_name"]}
    result = promote_model(
        resolved.promote,
        resolved.publish,
        Path(evaluation.path),
        Path(model_repository.path),
        published,
        run_id,
        configured_policy(load_taxonomy(), resolved),
    )
    print(json.dumps(result))
    return str(result["commit"])
