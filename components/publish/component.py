"""KFP wrapper for publishing the packaged repository."""

from typing import NamedTuple

from kfp.dsl import Artifact, Input


def publish(profile: str, model_repository: Input[Artifact]) -> NamedTuple(  # type: ignore[valid-type]
    "PublishOutputs", [("uri", str), ("digest", str), ("version", str)]
):
    """Upload to the profile's store under <model>/<version>/<digest>; verify; never overwrite."""
    from collections import namedtuple
    from pathlib import Path

    from tiergate.components.publish.step import publish_repository
    from tiergate.gate import configured_policy
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    resolved = load_profile(profile)
    policy = configured_policy(load_taxonomy(), resolved)
    result = publish_repository(Path(model_repository.path), resolved.publish, policy)
    outputs = namedtuple("outputs", ["uri", "digest", "version"])
    return outputs(result["uri"], result["digest"], result["version"])
