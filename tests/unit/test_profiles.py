from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.errors import ConfigError
from tiergate.profiles import load_profile


def test_profiles_resolve_with_inheritance() -> None:
    local, production = load_profile("local"), load_profile("production")
    assert local.generator.kind == "offline" and production.generator.kind == "anthropic"
    assert production.merge.splits.train == 0.8 and local.merge.splits.train == 0.7  # base value, local override
    assert local.merge.splits.salt == production.merge.splits.salt  # inherited from base: same split identity
    assert local.generation_counts == "local" and production.generation_counts == "production"
    assert local.sha256 != production.sha256
    assert load_profile("local", {"seed": 7}).seed == 7


def test_profile_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_profile("nope")
    with pytest.raises(ConfigError, match=r"merge.splits: train \+ val \+ test must be 1.0, got 1.1"):
        load_profile("production", {"merge": {"splits": {"train": 0.9}}})
    with pytest.raises(ConfigError, match=r"generator\.colour"):
        load_profile("local", {"generator": {"colour": "red"}})
    with pytest.raises(ConfigError, match=r"generator\.kind"):
        load_profile("local", {"generator": {"kind": "magic"}})
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="circular"):
        load_profile(str(loop))
