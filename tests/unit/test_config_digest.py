"""Caching keyed on content: the config digest moves with every config edit, and a step refuses another config."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from tiergate.config_digest import check_config_digest, run_config_digest
from tiergate.errors import ConfigError
from tiergate.paths import config_dir
from tiergate.pipelines.bookkeeping import write_summary
from tiergate.profiles import load_profile
from tiergate.taxonomy import load_taxonomy


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A copy of the packaged config under $TIERGATE_HOME, free to edit."""
    monkeypatch.delenv("TIERGATE_HOME", raising=False)
    shutil.copytree(config_dir(), tmp_path / "config")
    monkeypatch.setenv("TIERGATE_HOME", str(tmp_path))
    return tmp_path / "config"


def _digest() -> str:
    return run_config_digest(load_taxonomy(), load_profile("local"))


def test_digest_is_stable_and_moves_with_every_kind_of_config_edit(home: Path) -> None:
    before = _digest()
    assert before == _digest() and len(before) == 64
    seen = {before}

    taxonomy = yaml.safe_load((home / "taxonomy.yaml").read_text())
    taxonomy["categories"][0]["seeds"]["positive"].append("a brand new seed about {name}")
    (home / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy, sort_keys=False))
    seen.add(_digest())

    profile = home / "profiles" / "local.yaml"
    profile.write_text(profile.read_text() + "seed: 43\n")
    seen.add(_digest())

    suite = next((home / "regression").glob("*.yaml"))
    suite.write_text(suite.read_text() + "\n# reviewed\n")
    seen.add(_digest())

    vocabulary = home / "generators" / "offline.yaml"
    vocabulary.write_text(vocabulary.read_text() + "\n# reviewed\n")
    seen.add(_digest())
    assert len(seen) == 5, "each edit must change the digest, or KFP would serve the old result from cache"


def test_a_step_refuses_a_config_other_than_the_runs(home: Path) -> None:
    started_with = _digest()
    check_config_digest(started_with, load_taxonomy(), load_profile("local"))
    check_config_digest("", load_taxonomy(), load_profile("local"))  # not a pipeline task: nothing to compare
    profile = home / "profiles" / "local.yaml"
    profile.write_text(profile.read_text() + "seed: 43\n")
    with pytest.raises(ConfigError, match=r"this image's config \(digest \w{12}\) differs from the one the run started with"):
        check_config_digest(started_with, load_taxonomy(), load_profile("local"))


def test_run_summary_records_a_failed_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    status = {
        "state": "FAILED",
        "pipeline_job": "tiergate-abc",
        "pipeline_task": "exit-handler-1",
        "error_code": 9,
        "error_message": "train-2 failed: CUDA out of memory",
    }
    with caplog.at_level(logging.INFO):
        assert write_summary(str(tmp_path / "summary"), status, "production") == "FAILED"
    record = json.loads((tmp_path / "summary").read_text())
    assert record["state"] == "FAILED" and record["error_message"].startswith("train-2 failed") and record["finished_at"]
    errors = [entry for entry in caplog.records if entry.levelno == logging.ERROR]
    assert len(errors) == 1 and "tiergate-abc ended FAILED" in errors[0].getMessage()
