"""Config location: the packaged tree by default, `$TIERGATE_HOME/config` when set, never the checkout by accident."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tiergate.errors import ConfigError
from tiergate.paths import PROJECT_ROOT, config_dir, project_path
from tiergate.profiles import load_profile
from tiergate.taxonomy import default_taxonomy_path, load_taxonomy


def test_packaged_config_is_found_through_the_import_system(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERGATE_HOME", raising=False)
    assert (config_dir() / "taxonomy.yaml").is_file()
    assert default_taxonomy_path() == config_dir() / "taxonomy.yaml"


def test_tiergate_home_overrides_the_packaged_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TIERGATE_HOME", raising=False)
    shutil.copytree(config_dir(), tmp_path / "config")
    profile = tmp_path / "config" / "profiles" / "local.yaml"
    data = yaml.safe_load(profile.read_text())
    data["seed"] = 7
    profile.write_text(yaml.safe_dump(data))
    taxonomy_file = tmp_path / "config" / "taxonomy.yaml"
    taxonomy = yaml.safe_load(taxonomy_file.read_text())
    taxonomy["categories"][0]["definition"] = "A definition only the TIERGATE_HOME copy has."
    taxonomy_file.write_text(yaml.safe_dump(taxonomy, sort_keys=False))
    monkeypatch.setenv("TIERGATE_HOME", str(tmp_path))
    assert config_dir() == tmp_path / "config"
    assert load_profile("local").seed == 7
    assert load_taxonomy().categories[0].definition == "A definition only the TIERGATE_HOME copy has."
    assert project_path("config/regression") == tmp_path / "config" / "regression"


def test_tiergate_home_without_config_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIERGATE_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"TIERGATE_HOME is .*config is not a folder"):
        load_taxonomy()


def test_project_path_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERGATE_HOME", raising=False)
    assert project_path("/abs/x") == Path("/abs/x")
    assert project_path("config/regression") == config_dir() / "regression"
    assert project_path("runs/pvc") == PROJECT_ROOT / "runs" / "pvc"


def test_a_profile_outside_the_config_tree_can_extend_a_packaged_one(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: local\nname: mine\nseed: 3\n")
    profile = load_profile(str(mine))
    assert profile.name == "mine" and profile.seed == 3 and profile.serving.variant == "local"
