"""One digest of everything a run's results depend on in config: taxonomy, resolved profile, vectors, vocabulary.

Why: KFP caches a task on its inputs. The pipeline's inputs are names (`profile=production`),
so without this an edited taxonomy, gate or regression vector in a rebuilt image would be
served from cache. The first task computes the digest inside its image and passes it to
every cached step, so any config edit changes their cache keys. Each step recomputes it
in its own image and refuses to run on a different config (a CPU and a GPU image built
from different commits would otherwise train and evaluate against different taxonomies).
"""

from __future__ import annotations

from pathlib import Path

from tiergate.errors import ConfigError
from tiergate.hashing import sha256_file, sha256_json
from tiergate.paths import config_path, project_path
from tiergate.profiles import Profile
from tiergate.taxonomy import Taxonomy


def _files(folder: Path) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def run_config_digest(taxonomy: Taxonomy, profile: Profile) -> str:
    """sha256 over the taxonomy content, the resolved profile, the regression suites and the generator vocabulary."""
    vocabulary = config_path("generators", "offline.yaml")
    return sha256_json(
        {
            "taxonomy": taxonomy.content_sha256,
            "profile": profile.sha256,
            "regression": _files(project_path(profile.evaluate.regression_dir)),
            "vocabulary": sha256_file(vocabulary) if vocabulary.is_file() else None,
        }
    )


def check_config_digest(expected: str, taxonomy: Taxonomy, profile: Profile) -> None:
    """Refuse to run a pipeline step on another config than the one the run started with.

    An empty `expected` means the caller is not a pipeline task (CLI, tests): nothing to compare.
    """
    actual = run_config_digest(taxonomy, profile)
    if expected and expected != actual:
        raise ConfigError(
            f"this image's config (digest {actual[:12]}) differs from the one the run started with ({expected[:12]}): "
            "build every image from the same commit"
        )
