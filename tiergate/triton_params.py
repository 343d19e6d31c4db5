"""Triton model-config parameters: the one parser for `parameters { key: ... value: { string_value: ... } }`.

The python-backend models (which get the config as JSON) and the client (HTTP JSON, or gRPC via
MessageToDict) read the same shape: `{"parameters": {key: {"string_value": text}}}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def string_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """Every parameter of a model config as key -> string value (empty when the config has none)."""
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def json_parameter(parameters: Mapping[str, str], key: str, default: str | None = None) -> Any:
    """Decode a JSON-valued parameter; `default` (JSON text) when it is absent, KeyError when absent without one."""
    raw = parameters[key] if default is None else parameters.get(key, default)
    return json.loads(raw)
