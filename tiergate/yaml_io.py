"""YAML for configuration: a duplicate key is an error, never a silent last-one-wins.

PyYAML keeps the last of two equal keys, so a second `f1_gate:` under a tier, added by a
careless merge, would quietly weaken the gate. Every config file (taxonomy, profiles,
regression suites, generator vocabulary) is read through `load_yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tiergate.errors import ConfigError


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice, naming the line of the second."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            # `2:` and `"2":` are different YAML keys but the same tier once validated: compare as text.
            text = str(key)
            if text in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[text] + 1})", key_node.start_mark
                )
            seen[text] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document; syntax errors and duplicate keys become one-line ConfigErrors."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None


def load_yaml(path: Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    return parse_yaml(text, str(path))
