"""The CRD and its Python twin are one contract: same defaults, same phases, and every status the
state machine writes is one the CRD's schema admits (the API server would reject it otherwise)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
import yaml

from tiergate.errors import ConfigError, ManifestError
from tiergate.k8s_validation import TIERGATE_CRD_DIR, TIERGATE_CRDS, validate_manifest
from tiergate.moderation_model import (
    API_VERSION,
    KIND,
    PLURAL,
    Analysis,
    FailingVector,
    ModerationModelSpec,
    ModerationModelStatus,
    VersionRef,
    parse_spec,
    parse_status,
)

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def crd() -> dict[str, Any]:
    return dict(yaml.safe_load((TIERGATE_CRD_DIR / TIERGATE_CRDS[("tiergate.io", KIND)]).read_text()))


def schema() -> dict[str, Any]:
    (version,) = crd()["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def defaults(node: dict[str, Any]) -> Any:
    """The object the API server's defaulting makes of `{}` under this schema node."""
    if node.get("type") == "object" and "properties" in node:
        value = dict(node.get("default", {}))
        for key, child in node["properties"].items():
            filled = defaults(child)
            if filled is not None and key not in value:
                value[key] = filled
            elif isinstance(filled, dict) and isinstance(value.get(key), dict):
                value[key] = {**filled, **value[key]}
        return value if "default" in node or value else None
    return node.get("default")


MODEL = {
    "name": "tiergate",
    "version": "v2",
    "storageUri": "s3://models/tiergate/v2/" + "b" * 64,
    "digest": "b" * 64,
    "gateDigest": "f" * 64,
}


def test_names_and_version_match_the_python_side() -> None:
    document = crd()
    assert document["spec"]["group"] + "/" + document["spec"]["versions"][0]["name"] == API_VERSION
    assert document["spec"]["names"]["kind"] == KIND and document["spec"]["names"]["plural"] == PLURAL
    assert document["spec"]["versions"][0]["subresources"] == {"status": {}}
    columns = [column["name"] for column in document["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:3] == ["Version", "Phase", "Traffic"] and columns[-1] == "Age"


def test_crd_defaults_are_the_operators_defaults() -> None:
    spec_schema = schema()["properties"]["spec"]
    defaulted = {key: defaults(child) for key, child in spec_schema["properties"].items() if key != "model"}
    python = ModerationModelSpec.model_validate({"model": MODEL}).wire()
    python.pop("model")
    assert defaulted == python


def test_phases_are_the_state_machines() -> None:
    from typing import get_args

    from tiergate.moderation_model import Phase

    assert schema()["properties"]["status"]["properties"]["phase"]["enum"] == list(get_args(Phase))


def test_every_status_the_operator_writes_is_admitted_by_the_crd() -> None:
    version = VersionRef(version="v2", storage_uri=MODEL["storageUri"], digest="b" * 64, gate_digest="f" * 64)
    status = ModerationModelStatus(
        phase="RolledBack",
        message="v2 rolled back",
        observed_generation=3,
        traffic_percent=0,
        step_index=1,
        step_started_at="2026-11-26T00:00:00Z",
        rollout_started_at="2026-11-26T00:00:00Z",
        candidate=version,
        current=version,
        previous=version,
        rejected_generation=3,
        last_analysis=Analysis(
            version="v2",
            step_index=1,
            traffic_percent=50,
            time="2026-11-26T00:00:00Z",
            passed=False,
            reason="VectorsFailed",
            url="http://x",
            suites={"positives": "0/37"},
            failing_vectors=[FailingVector(id="pos-1", suite="positives", text="t", context="general/message")],
        ),
    )
    document = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "tiergate"}, "spec": {"model": MODEL}}
    document["status"] = status.wire()
    validate_manifest(document)
    jsonschema.Draft7Validator(schema()).validate(document)
    assert parse_status(document) == (status, "")  # and it reads back the same


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"model": {**MODEL, "digest": "B" * 64}}, "digest"),
        ({"model": {**MODEL, "storageUri": "s3://models/tiergate/v2/not-a-digest"}}, "storageUri"),
        ({"model": {**MODEL, "version": "../etc"}}, "version"),
        ({"rollout": {"steps": [10, 50]}}, "steps"),
        ({"rollout": {"steps": [10, 101]}}, "steps"),
        ({"rollout": {"analysis": {"suites": [{"name": "positives", "minPassRate": 1.5}]}}}, "minPassRate"),
        ({"serving": {"scaleMetric": "gpu"}}, "scaleMetric"),
    ],
)
def test_bad_specs_are_refused_by_both_sides(change: dict[str, Any], where: str) -> None:
    spec = {"model": MODEL, **change}
    document = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "tiergate"}, "spec": spec}
    with pytest.raises(ConfigError, match=where):
        parse_spec(document)
    if change.get("rollout", {}).get("steps") == [10, 50]:
        return  # the last-step rule is CEL (x-kubernetes-validations): the API server runs it, jsonschema cannot
    with pytest.raises(ManifestError):
        validate_manifest(document)


def test_a_damaged_status_starts_over_but_keeps_what_serves() -> None:
    current = {"version": "v1", "storageUri": MODEL["storageUri"], "digest": "b" * 64, "gateDigest": "f" * 64}
    status, problem = parse_status({"status": {"phase": "Paused", "current": current, "trafficPercent": "ten", "stepIndex": 7}})
    assert "phase" in problem and "trafficPercent" in problem
    assert status.phase == "Pending" and status.current is not None and status.current.version == "v1"
    assert status.step_index == 0 and status.traffic_percent == 0
    assert parse_status({}) == (ModerationModelStatus(), "")
