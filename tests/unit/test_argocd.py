"""The Argo CD side: the two Applications, and the ModerationModel health check run for real in Lua 5.1.

Argo CD evaluates `resource.customizations.health.<group>_<kind>` scripts with gopher-lua (Lua 5.1),
the resource as the global `obj`, and reads `status` / `message` from the table the script returns.
lupa's `lua51` runtime runs the same file here, against status objects of every phase.
`python -m tests.unit.test_argocd --write` regenerates argocd-cm-patch.yaml from the .lua file.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest
import yaml

from tiergate.paths import PROJECT_ROOT

ARGOCD = PROJECT_ROOT / "manifests" / "argocd"
HEALTH_SCRIPT = ARGOCD / "health" / "moderationmodel.lua"
CM_PATCH = ARGOCD / "argocd-cm-patch.yaml"
HEALTH_KEY = "resource.customizations.health.tiergate.io_ModerationModel"
CM_HEADER = """\
# Argo CD's health check for tiergate.io/ModerationModel (the operator's status.phase: Healthy once
# Promoted, Progressing while it verifies and canaries, Degraded when RolledBack or Failed), as a
# patch of the argocd-cm ConfigMap in Argo CD's namespace. Generated from health/moderationmodel.lua
# (python -m tests.unit.test_argocd --write); a test keeps the two equal. Merge it in, keeping the
# other keys:
#   kubectl -n argocd patch configmap argocd-cm --patch-file manifests/argocd/argocd-cm-patch.yaml
"""

V1 = {"version": "v1", "storageUri": "s3://m/tiergate/v1/" + "a" * 64, "digest": "a" * 64, "gateDigest": "b" * 64}
V2 = {"version": "v2", "storageUri": "s3://m/tiergate/v2/" + "c" * 64, "digest": "c" * 64, "gateDigest": "d" * 64}


def lua_runtime() -> Any:
    """Lua 5.1, as gopher-lua implements it (lupa's bundled PUC Lua 5.1; LuaJIT, also 5.1, otherwise)."""
    try:
        from lupa import lua51 as lua
    except ImportError:  # pragma: no cover - lupa builds without the bundled 5.1
        from lupa import luajit21 as lua
    runtime = lua.LuaRuntime(unpack_returned_tuples=True)
    assert runtime.eval("_VERSION") == "Lua 5.1"
    return runtime


@pytest.fixture(scope="module")
def lua() -> Any:
    return lua_runtime()


def health(lua: Any, resource: dict[str, Any]) -> dict[str, str]:
    """What Argo CD would show: the script run with `obj` set to the resource."""
    lua.globals().obj = lua.table_from(copy.deepcopy(resource), recursive=True)
    result = lua.execute(HEALTH_SCRIPT.read_text())
    out = dict(result.items())
    assert set(out) == {"status", "message"}, out
    assert out["status"] in {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
    return out


def resource(status: dict[str, Any] | None, generation: int = 2, version: str = "v2") -> dict[str, Any]:
    model = {"name": "tiergate", **(V2 if version == "v2" else V1)}
    document: dict[str, Any] = {
        "apiVersion": "tiergate.io/v1alpha1",
        "kind": "ModerationModel",
        "metadata": {"name": "tiergate", "namespace": "tiergate", "generation": generation},
        "spec": {"model": model},
    }
    if status is not None:
        document["status"] = status
    return document


def analysis(passed: bool, vectors: list[str], version: str = "v2") -> dict[str, Any]:
    return {
        "version": version,
        "stepIndex": 0,
        "trafficPercent": 10,
        "time": "2026-11-26T02:00:00Z",
        "passed": passed,
        "reason": "positives 35/37" if vectors else "every suite passed",
        "suites": {"positives": "35/37" if vectors else "37/37"},
        "failingVectors": [
            {"id": vector, "suite": "positives", "text": "...", "context": "general/message"} for vector in vectors
        ],
    }


CASES = [
    ("no status yet", resource(None), "Progressing", "Waiting for the tiergate operator to pick up this ModerationModel"),
    ("status without phase", resource({}), "Progressing", "Waiting for the tiergate operator to pick up this ModerationModel"),
    (
        "status of an older generation",
        resource({"phase": "Promoted", "observedGeneration": 1, "trafficPercent": 100, "current": V1}, generation=2),
        "Progressing",
        "Waiting for the tiergate operator to observe generation 2",
    ),
    (
        "Pending",
        resource({"phase": "Pending", "observedGeneration": 2, "trafficPercent": 0, "current": V1}),
        "Progressing",
        "Pending: 0% of traffic on v2 (v1 serves the rest)",
    ),
    (
        "Verifying",
        resource({"phase": "Verifying", "observedGeneration": 2, "trafficPercent": 0, "candidate": V2, "current": V1}),
        "Progressing",
        "Verifying: 0% of traffic on v2 (v1 serves the rest)",
    ),
    (
        "Canary at the first step",
        resource({"phase": "Canary", "observedGeneration": 2, "trafficPercent": 10, "candidate": V2, "current": V1}),
        "Progressing",
        "Canary: 10% of traffic on v2 (v1 serves the rest)",
    ),
    (
        "Canary, first version (nothing served before)",
        resource({"phase": "Canary", "observedGeneration": 2, "trafficPercent": 100, "candidate": V2}),
        "Progressing",
        "Canary: 100% of traffic on v2",
    ),
    (
        "Promoted",
        resource({"phase": "Promoted", "observedGeneration": 2, "trafficPercent": 100, "current": V2, "previous": V1}),
        "Healthy",
        "Promoted: v2 serves all traffic",
    ),
    (
        "RolledBack with failing vectors",
        resource(
            {
                "phase": "RolledBack",
                "observedGeneration": 2,
                "trafficPercent": 0,
                "candidate": V2,
                "current": V1,
                "rejectedGeneration": 2,
                "message": "v2 rolled back: positives 35/37; all traffic on v1",
                "lastAnalysis": analysis(False, ["pos-threats-1", "pos-spam-2"]),
            }
        ),
        "Degraded",
        "RolledBack: v2 was rejected, all traffic on v1; failing vectors: pos-threats-1, pos-spam-2",
    ),
    (
        "RolledBack on a timeout (no analysis of v2)",
        resource(
            {
                "phase": "RolledBack",
                "observedGeneration": 2,
                "trafficPercent": 0,
                "candidate": V2,
                "current": V1,
                "message": "v2 rolled back: canary not ready in 900 s; all traffic on v1",
                "lastAnalysis": analysis(False, ["old-1"], version="v1"),  # an older version's: not named
            }
        ),
        "Degraded",
        "RolledBack: v2 was rejected, all traffic on v1; v2 rolled back: canary not ready in 900 s; all traffic on v1",
    ),
    (
        "Failed verification",
        resource(
            {
                "phase": "Failed",
                "observedGeneration": 2,
                "candidate": V2,
                "message": "s3://m/tiergate/v2/ccc: classifier/1/model.onnx has sha256 0000, not cccc",
            }
        ),
        "Degraded",
        "Failed: s3://m/tiergate/v2/ccc: classifier/1/model.onnx has sha256 0000, not cccc",
    ),
    (
        "Failed first version with failing vectors",
        resource(
            {
                "phase": "Failed",
                "observedGeneration": 2,
                "candidate": V2,
                "message": "v2 failed: positives 36/37; nothing serves",
                "lastAnalysis": analysis(False, ["pos-threats-1"]),
            }
        ),
        "Degraded",
        "Failed: v2 failed: positives 36/37; nothing serves; failing vectors: pos-threats-1",
    ),
    (
        "Failed without a message",
        resource({"phase": "Failed", "observedGeneration": 2}),
        "Degraded",
        "Failed: v2 cannot be deployed",
    ),
    (
        "a phase this script does not know",
        resource({"phase": "Paused", "observedGeneration": 2}),
        "Unknown",
        "Unknown phase Paused",
    ),
]


@pytest.mark.parametrize(("resource_", "status", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_health_of_every_phase(lua: Any, resource_: dict[str, Any], status: str, message: str) -> None:
    assert health(lua, resource_) == {"status": status, "message": message}


def test_sample_resources_are_valid_moderation_models() -> None:
    """The table's resources are what the operator writes: they validate against the CRD (status included)."""
    from tiergate.k8s_validation import validate_manifest

    for _, document, _, _ in CASES:
        if "status" in document and document["status"].get("phase") in {None, "Paused"}:
            continue
        validate_manifest(document)


def test_many_failing_vectors_are_counted_not_listed(lua: Any) -> None:
    vectors = [f"pos-{index}" for index in range(1, 14)]
    status = {
        "phase": "RolledBack",
        "observedGeneration": 2,
        "candidate": V2,
        "current": V1,
        "lastAnalysis": analysis(False, vectors),
    }
    message = health(lua, resource(status))["message"]
    assert message.endswith("failing vectors: " + ", ".join(vectors[:10]) + " and 3 more")


@pytest.mark.parametrize(
    "damage",
    [
        {"candidate": 5},
        {"observedGeneration": "2"},
        {"lastAnalysis": {"version": "v2", "failingVectors": "abc"}},
        {"lastAnalysis": {"version": "v2", "failingVectors": [1, 2]}},
        {"trafficPercent": {}},
        {"current": {"version": {}}},
        {"message": ["x"]},
        {"lastAnalysis": {"version": "v2", "failingVectors": [{"id": "x" * 5000}] * 3}},
    ],
)
def test_a_hand_edited_status_degrades_the_message_never_the_check(lua: Any, damage: dict[str, Any]) -> None:
    status = {"phase": "RolledBack", "observedGeneration": 2, "candidate": V2, "current": V1, **damage}
    result = health(lua, resource(status))
    assert result["status"] in ("Degraded", "Progressing") and len(result["message"]) <= 500


def test_promoted_naming_no_serving_version_is_not_healthy(lua: Any) -> None:
    result = health(lua, resource({"phase": "Promoted", "observedGeneration": 2, "trafficPercent": 100}))
    assert result["status"] == "Progressing"


def test_every_phase_of_the_crd_is_mapped(lua: Any) -> None:
    """A phase added to the CRD without a mapping here would show as Unknown in Argo CD."""
    crd = yaml.safe_load((PROJECT_ROOT / "tiergate" / "crds" / "tiergate.io_moderationmodels.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    phases = schema["properties"]["status"]["properties"]["phase"]["enum"]
    expected = {"Promoted": "Healthy", "Pending": "Progressing", "Verifying": "Progressing", "Canary": "Progressing"}
    expected |= {"RolledBack": "Degraded", "Failed": "Degraded"}
    assert set(phases) == set(expected)
    for phase in phases:
        status = {"phase": phase, "observedGeneration": 2, "candidate": V2, "current": V1, "trafficPercent": 10}
        assert health(lua, resource(status))["status"] == expected[phase], phase


def test_script_is_argo_cd_shaped() -> None:
    """Like Argo CD's own resource_customizations health.lua: one local `hs` table, returned."""
    text = HEALTH_SCRIPT.read_text()
    assert text.count("local hs = {}") == 1 and text.rstrip().endswith("return hs")
    assert "require" not in text and "os." not in text and "io." not in text  # gopher-lua's sandbox in Argo CD


def cm_patch_text() -> str:
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
        },
        "data": {HEALTH_KEY: HEALTH_SCRIPT.read_text()},
    }

    class BlockStrings(yaml.SafeDumper):
        pass

    def text_block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    BlockStrings.add_representer(str, text_block)
    return CM_HEADER + yaml.dump(document, Dumper=BlockStrings, sort_keys=False, width=200)


def test_argocd_cm_patch_holds_exactly_the_script() -> None:
    patch = yaml.safe_load(CM_PATCH.read_text())
    assert (patch["kind"], patch["metadata"]["name"], patch["metadata"]["namespace"]) == ("ConfigMap", "argocd-cm", "argocd")
    assert patch["data"] == {HEALTH_KEY: HEALTH_SCRIPT.read_text()}
    assert CM_PATCH.read_text() == cm_patch_text(), "python -m tests.unit.test_argocd --write"


def _applications() -> dict[str, dict[str, Any]]:
    documents = [yaml.safe_load(path.read_text()) for path in sorted(ARGOCD.glob("application*.yaml"))]
    return {document["spec"]["source"]["path"]: document for document in documents}


def test_operator_application_syncs_first_into_tiergate_system() -> None:
    applications = _applications()
    operator, serving = applications["charts/tiergate-operator"], applications["charts/tiergate-serving"]
    wave = "argocd.argoproj.io/sync-wave"
    assert int(operator["metadata"]["annotations"][wave]) < int(serving["metadata"]["annotations"].get(wave, "0"))
    assert operator["spec"]["destination"]["namespace"] == "tiergate-system"
    assert operator["spec"]["source"]["helm"]["releaseName"] == "tiergate-operator"
    # The serving chart's NetworkPolicy admits the operator from the namespace this Application installs it into.
    values = yaml.safe_load((PROJECT_ROOT / "charts" / "tiergate-serving" / "values.yaml").read_text())
    selector = values["networkPolicy"]["operatorNamespaceSelector"]
    assert selector == {"matchLabels": {"kubernetes.io/metadata.name": operator["spec"]["destination"]["namespace"]}}


def test_nothing_is_a_postsync_hook_any_more() -> None:
    """The operator verifies before traffic moves; a PostSync Job ran after it had moved."""
    serving = _applications()["charts/tiergate-serving"]
    assert "PostSync" not in yaml.safe_dump(serving)
    for path in (PROJECT_ROOT / "charts").rglob("*.yaml"):
        assert "argocd.argoproj.io/hook" not in path.read_text(), path


def test_readme_installs_what_is_here() -> None:
    """The README's install lines name this patch file and the operator Application's namespace."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert f"kubectl -n argocd patch configmap argocd-cm --patch-file {CM_PATCH.relative_to(PROJECT_ROOT)}" in readme
    namespace = _applications()["charts/tiergate-operator"]["spec"]["destination"]["namespace"]
    assert f"helm install tiergate-operator charts/tiergate-operator --namespace {namespace} --create-namespace" in readme


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.unit.test_argocd --write")
    CM_PATCH.write_text(cm_patch_text())
    print(f"wrote {CM_PATCH.relative_to(PROJECT_ROOT)}")
