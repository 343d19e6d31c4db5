"""Shared fixtures. Nothing here downloads anything: models are built from configs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tiergate.profiles import Profile, load_profile
from tiergate.taxonomy import DEFAULT_TAXONOMY_PATH, Taxonomy, load_taxonomy

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


@pytest.fixture(scope="session")
def taxonomy_data() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_TAXONOMY_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def taxonomy_dict(taxonomy_data: dict[str, Any]) -> dict[str, Any]:
    """A mutable deep copy of the real taxonomy, for bad-input tests."""
    return copy.deepcopy(taxonomy_data)


@pytest.fixture(scope="session")
def local_profile() -> Profile:
    return load_profile("local")


def small_profile(**overrides: Any) -> Profile:
    return load_profile("local", overrides)
