"""Shared fixtures. Nothing here downloads anything: models are built from configs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.postgres_helpers import postgres_server  # noqa: F401  (a fixture the PostgreSQL tests share)
from tiergate.profiles import Profile, load_profile
from tiergate.taxonomy import Taxonomy, default_taxonomy_path, load_taxonomy

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


@pytest.fixture(scope="session")
def taxonomy_data() -> dict[str, Any]:
    return yaml.safe_load(default_taxonomy_path().read_text(encoding="utf-8"))


@pytest.fixture
def taxonomy_dict(taxonomy_data: dict[str, Any]) -> dict[str, Any]:
    """A mutable deep copy of the real taxonomy, for bad-input tests."""
    return copy.deepcopy(taxonomy_data)


@pytest.fixture(scope="session")
def local_profile() -> Profile:
    return load_profile("local")


def small_profile(**overrides: Any) -> Profile:
    return load_profile("local", overrides)


SMALL_CATEGORIES = ("threats", "csam", "harassment", "doxxing", "profanity", "spam")


@pytest.fixture(scope="session")
def merged_small(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy) -> Path:
    """A real merged dataset (offline generator) over a few categories: seconds to build."""
    from tiergate.components.generate.step import generate_category
    from tiergate.components.merge.step import merge_datasets

    root = tmp_path_factory.mktemp("data")
    profile = load_profile("local")
    for name in SMALL_CATEGORIES:
        generate_category(taxonomy, profile, name, root / "generated" / name)
    merge_datasets(taxonomy, profile, [root / "generated" / name for name in SMALL_CATEGORIES], root / "merged")
    return root / "merged"


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy) -> Path:
    from tests.tiny_model import build_tiny_base_model

    return build_tiny_base_model(taxonomy, tmp_path_factory.mktemp("tiny") / "base")


def tiny_profile(base: Path, **overrides: Any) -> Profile:
    train = {
        "base_model": str(base),
        "learning_rate": 1e-3,
        "phases": {"phase1": {"epochs": 1}, "phase2": {"epochs": 1}, "phase3": {"epochs": 1}},
    }
    train.update(overrides.pop("train", {}))
    return load_profile("local", {"train": train, **overrides})


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy, merged_small: Path, tiny_base: Path) -> Path:
    """All three phases trained on the tiny model: the input of export/evaluate tests."""
    from tiergate.components.train.step import train_all

    out = tmp_path_factory.mktemp("checkpoints")
    train_all(taxonomy, tiny_profile(tiny_base), merged_small, out)
    return out


@pytest.fixture(scope="session")
def tiny_export(
    tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy, merged_small: Path, tiny_checkpoints: Path, tiny_base: Path
) -> Path:
    from tiergate.components.export.step import export_model

    out = tmp_path_factory.mktemp("export")
    export_model(taxonomy, tiny_profile(tiny_base), tiny_checkpoints / "phase3", merged_small, out)
    return out


TINY_MODEL_VERSION = "test-1"


@pytest.fixture(scope="session")
def tiny_evaluation(
    tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy, tiny_export: Path, merged_small: Path, tiny_base: Path
) -> Path:
    """The tiny export evaluated as the pipeline would (its own gate: the tiny model does not pass it)."""
    from tiergate.components.evaluate.step import evaluate_model

    out = tmp_path_factory.mktemp("evaluation")
    evaluate_model(taxonomy, tiny_profile(tiny_base), tiny_export, merged_small, out)
    return out


@pytest.fixture(scope="session")
def tiny_repository(
    tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy, tiny_export: Path, tiny_evaluation: Path, tiny_base: Path
) -> Path:
    """The tiny model packaged by the real, verifying path from a consistent passing gate (floors at zero, see `lenient`).

    Shared by every live-server test module; tests copy it before serving (Triton writes `__pycache__`).
    """
    import shutil

    from tests.trust_helpers import lenient
    from tiergate.components.package.repository import build_repository
    from tiergate.gate import load_gate, write_gate

    passing = tmp_path_factory.mktemp("passing-evaluation")
    shutil.copytree(tiny_evaluation, passing, dirs_exist_ok=True)
    write_gate(passing, lenient(load_gate(tiny_evaluation), tiny_evaluation))
    out = tmp_path_factory.mktemp("repo") / "repository"
    build_repository(taxonomy, tiny_profile(tiny_base).serving, tiny_export, passing, out, TINY_MODEL_VERSION)
    return out
