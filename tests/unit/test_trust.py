"""The trust chain, tried as a careless or hostile user would: every forgery below must be refused.

Each test starts from a repository that verifies (a real gate from `decide`, see
tests/trust_helpers.py), breaks one link, and checks for a one-line refusal that leaves the store
and the GitOps repository as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.trust_helpers import make_repository, write_manifest
from tiergate.components.promote.step import promote, rollback
from tiergate.components.publish.step import publish_repository
from tiergate.errors import ConfigError, OutputError, PromotionRefused, PublishError
from tiergate.gate import SIGNING_KEY_ENV, GateRecord, configured_policy, parse_gate, verify_decision
from tiergate.hashing import read_json, write_json
from tiergate.outputs import atomic_output
from tiergate.profiles import PromoteSettings, PublishSettings, load_profile
from tiergate.store import fetch_repository, verify_published
from tiergate.taxonomy import load_taxonomy
from tiergate.trust import check_relative_path, verify_local_repository
from tiergate.yaml_io import parse_yaml

GATE = "gate.json"


def store_settings(tmp_path: Path) -> PublishSettings:
    return load_profile("local", {"publish": {"pvc_mount_root": str(tmp_path / "pvc")}}).publish


def store_root(tmp_path: Path) -> Path:
    return tmp_path / "pvc" / "tiergate-models" / "store"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes: 'the store is exactly as it was' is an equality of these."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def forge_gate(repo: Path, **changes: Any) -> None:
    """Edit gate.json and re-make the manifest around it, as a user with a text editor would."""
    gate = read_json(repo / GATE)
    gate.update(changes)
    write_json(repo / GATE, gate)
    write_manifest(repo, read_json(repo / "repository.json")["model_version"], GateRecord.model_validate(gate).digest())


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tiergate.cli.main", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# ---- the gate record --------------------------------------------------------------------------


def test_a_real_gate_verifies_and_every_hand_edit_is_refused(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "r", "v1")
    gate = read_json(repo / GATE)
    verify_decision(parse_gate(gate, "gate"), configured_policy(load_taxonomy(), load_profile("local")))
    first = gate["rules"][0]
    forgeries = {
        "passed flipped": ({**gate, "passed": False}, "says passed=False"),
        "rule status flipped": (
            {**gate, "rules": [{**first, "value": 0.1}, *gate["rules"][1:]]},
            f"rule {first['rule']} is recorded as pass but its numbers say fail",
        ),
        "floor lowered": ({**gate, "rules": [{**first, "floor": 0.0}, *gate["rules"][1:]]}, "records floor 0.0"),
        "rule removed": ({**gate, "rules": gate["rules"][1:]}, "missing"),
        "policy lowered": (
            {
                **gate,
                "policy": {**gate["policy"], "tiers": {**gate["policy"]["tiers"], "1": {"f1_gate": 0.0, "recall_floor": 0.0}}},
            },
            "policy_sha256 does not match",
        ),
    }
    for name, (forged, message) in forgeries.items():
        with pytest.raises(PromotionRefused) as caught:
            verify_decision(parse_gate(forged, name))
        assert message in str(caught.value), (name, str(caught.value))


def test_a_failing_gate_with_passed_set_to_true_is_refused(tmp_path: Path) -> None:
    """The log's forgery: `"passed": true` typed into a gate whose decision and failures still say reject."""
    repo = make_repository(tmp_path / "r", "v1")
    gate = read_json(repo / GATE)
    failing = {**gate["rules"][0], "value": 0.2, "status": "fail"}
    forge_gate(repo, rules=[failing, *gate["rules"][1:]], failures=[failing], passed=True, decision="reject")
    with pytest.raises(PromotionRefused, match=r"says passed=True, decision='reject', but its rules say reject"):
        verify_local_repository(repo)


def test_a_gate_judged_under_another_policy_is_refused(tmp_path: Path, taxonomy_dict: dict[str, Any]) -> None:
    from tiergate.taxonomy import parse_taxonomy

    repo = make_repository(tmp_path / "r", "v1")
    taxonomy_dict["tiers"][1]["f1_gate"] = 0.5  # someone weakened the T1 gate after the evaluation
    weakened = parse_taxonomy(taxonomy_dict, "edited")
    with pytest.raises(PromotionRefused, match=r"judged under another policy .*tiers\.1"):
        verify_local_repository(repo, policy=configured_policy(weakened, load_profile("local")))


def test_signed_gates_refuse_unsigned_and_edited_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiergate.gate import write_gate

    repo = make_repository(tmp_path / "r", "v1")
    gate = parse_gate(read_json(repo / GATE), "gate")
    monkeypatch.setenv(SIGNING_KEY_ENV, "a-secret-from-a-kubernetes-secret")
    with pytest.raises(PromotionRefused, match="not signed"):
        verify_decision(gate)
    signed = write_gate(tmp_path / "eval", gate)
    verify_decision(signed)
    edited = signed.model_copy(update={"smoke_test": True})
    with pytest.raises(PromotionRefused, match="signature does not match"):
        verify_decision(edited)
    monkeypatch.setenv(SIGNING_KEY_ENV, "another-key")
    with pytest.raises(PromotionRefused, match="signature does not match"):
        verify_decision(signed)
    assert "a-secret" not in json.dumps(signed.as_json())


# ---- the repository ---------------------------------------------------------------------------


def test_thresholds_edited_and_manifest_remade_is_refused(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "r", "v1")
    thresholds = repo / "postprocess" / "1" / "thresholds.json"
    thresholds.write_text('{"thresholds": 0.999}')  # nothing gets flagged any more
    write_manifest(repo, "v1", read_json(repo / "repository.json")["gate_digest"])
    with pytest.raises(PromotionRefused, match=r"thresholds\.json is .* but the gate judged"):
        verify_local_repository(repo)


def test_a_swapped_label_file_is_refused(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "r", "v1")
    labels = repo / "postprocess" / "labels.txt"
    names = labels.read_text().splitlines()
    names[0], names[1] = names[1], names[0]  # the scores would be reported under each other's names
    labels.write_text("\n".join(names) + "\n")
    write_manifest(repo, "v1", read_json(repo / "repository.json")["gate_digest"])
    with pytest.raises(PromotionRefused, match=r"labels\.txt does not list the labels the gate judged"):
        verify_local_repository(repo)


def test_changed_extra_and_missing_files_are_refused(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "r", "v1")
    (repo / "classifier" / "1" / "model.onnx").write_text("weights, retrained on the quiet")
    with pytest.raises(PromotionRefused, match=r"model\.onnx has sha256 .* the manifest says"):
        verify_local_repository(repo)
    repo = make_repository(tmp_path / "r2", "v1")
    (repo / "classifier" / "1" / "model.py").write_text("import os")  # Triton would load it
    with pytest.raises(PromotionRefused, match=r"not in the manifest, first classifier/1/model\.py"):
        verify_local_repository(repo)
    repo = make_repository(tmp_path / "r3", "v1")
    (repo / GATE).unlink()
    with pytest.raises(PromotionRefused, match=r"listed file\(s\) missing, first gate\.json"):
        verify_local_repository(repo)


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", "a/../../b", "a\\b", "", ".", "a//b", "./a", "ok/\x00x"], ids=repr)
def test_unsafe_file_names_are_refused(name: str) -> None:
    with pytest.raises(PromotionRefused, match="not a safe relative path"):
        check_relative_path(name)


@pytest.mark.parametrize("field, value", [("model_version", "../../escape"), ("model_name", "a/b"), ("model_version", "..")])
def test_traversal_in_manifest_names_cannot_escape_the_store(tmp_path: Path, field: str, value: str) -> None:
    repo = make_repository(tmp_path / "r", "v1")
    manifest = read_json(repo / "repository.json")
    write_json(repo / "repository.json", {**manifest, field: value})
    before = snapshot(tmp_path)
    with pytest.raises(PromotionRefused, match="is not valid: use"):
        publish_repository(repo, store_settings(tmp_path))
    assert snapshot(tmp_path) == before


def test_a_manifest_listing_a_file_outside_the_repository_copies_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the store")
    repo = make_repository(tmp_path / "r", "v1")
    manifest = read_json(repo / "repository.json")
    files = {**manifest["files"], "../secret.txt": "0" * 64}
    write_json(repo / "repository.json", {**manifest, "files": files})
    with pytest.raises(PromotionRefused, match="not a safe relative path"):
        publish_repository(repo, store_settings(tmp_path))
    assert not store_root(tmp_path).exists()


# ---- publish ----------------------------------------------------------------------------------


def test_publish_of_an_ungated_or_forged_repository_leaves_the_store_untouched(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)
    publish_repository(make_repository(tmp_path / "ok", "v0"), settings)
    before = snapshot(store_root(tmp_path))
    repo = make_repository(tmp_path / "r", "v1")
    forge_gate(repo, passed=False, decision="reject")
    with pytest.raises(PromotionRefused, match="says passed=False"):
        publish_repository(repo, settings)
    assert snapshot(store_root(tmp_path)) == before


def test_republishing_a_corrupted_store_copy_is_refused(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)
    repo = make_repository(tmp_path / "r", "v1")
    result = publish_repository(repo, settings)
    stored = store_root(tmp_path) / "tiergate" / "v1" / result["digest"]
    model = stored / "classifier" / "1" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-4] + b"XXXX")
    with pytest.raises(PublishError, match=r"published copy of v1 no longer verifies .*model\.onnx"):
        publish_repository(repo, settings)
    with pytest.raises(PromotionRefused, match=r"model\.onnx has sha256"):
        verify_published(result["uri"], settings)


def test_a_failed_upload_leaves_no_half_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tiergate.components.publish.step as publish_step

    settings = store_settings(tmp_path)
    repo = make_repository(tmp_path / "r", "v1")
    real_upload = publish_step.upload

    def upload_then_disk_full(filesystem: Any, repository: Path, files: list[str], destination: str) -> None:
        real_upload(filesystem, repository, files[:1], destination)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publish_step, "upload", upload_then_disk_full)
    with pytest.raises(PublishError, match=r"nothing was published: .*No space left"):
        publish_repository(repo, settings)
    assert [p.name for p in store_root(tmp_path).rglob("*") if p.is_file()] == [".publish.lock"]  # the lock stays, empty
    monkeypatch.setattr(publish_step, "upload", real_upload)
    assert not publish_repository(repo, settings)["already_published"]  # the version was not used up


def test_a_version_without_its_marker_is_not_published(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)
    result = publish_repository(make_repository(tmp_path / "r", "v1"), settings)
    (store_root(tmp_path) / "tiergate" / "v1" / "published.json").unlink()
    with pytest.raises(PromotionRefused, match="not published in the store"):
        verify_published(result["uri"], settings)


# ---- promote and rollback ---------------------------------------------------------------------


@pytest.fixture
def gitops(tmp_path: Path) -> PromoteSettings:
    return load_profile("local", {"promote": {"repo_url": str(tmp_path / "gitops.git")}}).promote


def _evaluation_of(repo: Path, tmp_path: Path) -> Path:
    evaluation = tmp_path / f"eval-{repo.name}"
    write_json(evaluation / GATE, read_json(repo / GATE))
    return evaluation


def test_promote_apply_refuses_before_publishing(tmp_path: Path, gitops: PromoteSettings) -> None:
    """`promote apply` used to publish first: a refused model still landed in the store and used up its version."""
    repo = make_repository(tmp_path / "r", "v1")
    evaluation = _evaluation_of(repo, tmp_path)
    gate = read_json(evaluation / GATE)
    write_json(evaluation / GATE, {**gate, "passed": False, "decision": "reject"})
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        f"extends: local\npublish: {{pvc_mount_root: {tmp_path / 'pvc'}}}\npromote: {{repo_url: {gitops.repo_url}}}\n"
    )
    result = cli("promote", "apply", "--evaluation", str(evaluation), "--repository", str(repo), "--profile", str(profile))
    assert_one_line_refusal(result, "passed=False")
    assert not store_root(tmp_path).exists() and not Path(gitops.repo_url).exists()
    write_json(evaluation / GATE, gate)
    result = cli("promote", "apply", "--evaluation", str(evaluation), "--repository", str(repo), "--profile", str(profile))
    assert result.returncode == 0, result.stderr
    assert "v1: committed" in result.stdout


def test_rollback_reverifies_the_target(tmp_path: Path, gitops: PromoteSettings) -> None:
    settings = store_settings(tmp_path)
    published = {}
    for version in ("v1", "v2"):
        repo = make_repository(tmp_path / f"r-{version}", version, payload=f"weights {version}")
        published[version] = publish_repository(repo, settings)
        promote(gitops, settings, _evaluation_of(repo, tmp_path), repo, published[version], "run")
    model = store_root(tmp_path) / "tiergate" / "v1" / published["v1"]["digest"] / "classifier" / "1" / "model.onnx"
    original = model.read_bytes()
    model.write_bytes(b"0" * 16 + original[16:])
    head = subprocess.run(["git", "--git-dir", gitops.repo_url, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    with pytest.raises(PromotionRefused, match=r"cannot roll back to v1: .*model\.onnx has sha256"):
        rollback(gitops, settings, "v1")
    model.write_bytes(original)
    shutil.rmtree(model.parents[2])  # the whole stored version deleted
    with pytest.raises(PromotionRefused, match=r"cannot roll back to v1: .*does not exist"):
        rollback(gitops, settings, "v1")
    after = subprocess.run(["git", "--git-dir", gitops.repo_url, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert head == after  # nothing was committed


# ---- load -------------------------------------------------------------------------------------


def test_fetch_verifies_before_anything_can_load(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)
    result = publish_repository(make_repository(tmp_path / "r", "v1"), settings)
    good = tmp_path / "mnt" / "models"
    good.mkdir(parents=True)
    fetched = fetch_repository(result["uri"], good, settings)
    assert fetched.manifest.digest == result["digest"]
    assert (good / "repository.json").is_file() and not [p for p in good.iterdir() if p.name.startswith(".")]
    thresholds = store_root(tmp_path) / "tiergate" / "v1" / result["digest"] / "postprocess" / "1" / "thresholds.json"
    thresholds.write_text('{"thresholds": 0.999}')
    bad = tmp_path / "mnt" / "bad"
    bad.mkdir()
    outcome = cli("repository", "fetch", result["uri"], str(bad), "--profile", _profile_file(tmp_path))
    assert_one_line_refusal(outcome, "thresholds.json has sha256")
    assert list(bad.iterdir()) == []  # nothing for Triton to load: the pod never becomes ready


def _profile_file(tmp_path: Path) -> str:
    profile = tmp_path / "store-profile.yaml"
    profile.write_text(f"extends: local\npublish: {{pvc_mount_root: {tmp_path / 'pvc'}}}\n")
    return str(profile)


def test_serve_refuses_an_unverified_repository(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "r", "v1")
    (repo / "classifier" / "1" / "model.onnx").write_text("swapped")
    result = cli("serve", "--model-repo", str(repo), "--work-dir", str(tmp_path / "w"))
    assert_one_line_refusal(result, "model.onnx has sha256")


def test_cli_publish_and_verify_refusals_are_one_line(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "r", "v1")
    forge_gate(repo, passed=False, decision="reject")
    assert_one_line_refusal(cli("publish", str(repo), "--profile", _profile_file(tmp_path)), "says passed=False")
    assert_one_line_refusal(cli("repository", "verify", str(repo)), "says passed=False")
    assert_one_line_refusal(cli("repository", "verify", str(tmp_path / "nowhere")), "no model repository there")
    ok = make_repository(tmp_path / "ok", "v1")
    assert cli("repository", "verify", str(ok)).returncode == 0
    assert_one_line_refusal(cli("repository", "verify", str(ok), "--digest", "f" * 64), "is not the expected")


# ---- configuration and outputs ----------------------------------------------------------------


def test_duplicate_yaml_keys_are_refused_with_their_line() -> None:
    with pytest.raises(ConfigError, match=r"taxonomy.yaml:4: invalid YAML: duplicate key 'f1_gate' \(first on line 3\)"):
        parse_yaml("tiers:\n  1:\n    f1_gate: 0.95\n    f1_gate: 0.10\n", "taxonomy.yaml")


def test_a_taxonomy_with_a_duplicated_gate_key_or_inverted_range_is_refused_by_the_cli(tmp_path: Path) -> None:
    from tiergate.taxonomy import default_taxonomy_path

    text = default_taxonomy_path().read_text(encoding="utf-8")
    first_gate = text.index("f1_gate:")
    line_end = text.index("\n", first_gate)
    indent = text[text.rindex("\n", 0, first_gate) + 1 : first_gate]
    duplicated = tmp_path / "taxonomy.yaml"
    duplicated.write_text(text[:line_end] + f"\n{indent}f1_gate: 0.10" + text[line_end:], encoding="utf-8")
    result = cli("taxonomy", "validate", str(duplicated))
    assert_one_line_refusal(result, "duplicate key 'f1_gate'")


def test_outputs_are_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "evaluation"
    with atomic_output(out) as staging:
        (staging / "gate.json").write_text("first")
    with pytest.raises(OutputError, match="not empty; pass --overwrite"), atomic_output(out):
        pass
    with pytest.raises(RuntimeError), atomic_output(out, overwrite=True) as staging:
        (staging / "gate.json").write_text("half")
        raise RuntimeError("killed mid-way")
    assert (out / "gate.json").read_text() == "first"
    with atomic_output(out, overwrite=True) as staging:
        with pytest.raises(OutputError, match="another process is writing"), atomic_output(out, overwrite=True):
            pass
        (staging / "gate.json").write_text("second")
    assert (out / "gate.json").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".evaluation.lock", "evaluation"]


def test_a_read_only_or_full_target_is_one_line_and_keeps_the_previous_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root ignores file modes, so the file system's refusal is raised where the rename happens."""
    import errno

    import tiergate.outputs as outputs

    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("previous")
    for code in (errno.EROFS, errno.ENOSPC):

        def refuse(staging: Path, target: Path, code: int = code) -> None:
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(outputs, "replace", refuse)
        expected = f"could not write .*{os.strerror(code)}.*previous output is untouched"
        with pytest.raises(OutputError, match=expected), atomic_output(out, overwrite=True) as staging:
            (staging / "x").write_text("new")
        assert (out / "x").read_text() == "previous"
        assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


# ---- second round: what a hostile probe got past the first cut -------------------------------


def test_with_a_key_every_served_file_is_bound_not_only_the_judged_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, "k3y")
    repo = make_repository(tmp_path / "r", "v1")  # gate and manifest signed with the key
    verify_local_repository(repo)
    (repo / "classifier" / "config.pbtxt").write_text(
        'name: "classifier"\nparameters { key: "max_length" value { string_value: "4" } }\n'
    )
    (repo / "postprocess" / "1").mkdir(parents=True, exist_ok=True)
    (repo / "postprocess" / "1" / "model.py").write_text("def execute(requests):\n    return []\n")
    monkeypatch.delenv(SIGNING_KEY_ENV)
    write_manifest(repo, "v1", read_json(repo / "repository.json")["gate_digest"])  # re-made without the key
    monkeypatch.setenv(SIGNING_KEY_ENV, "k3y")
    with pytest.raises(PromotionRefused, match=r"repository\.json is not signed"):
        verify_local_repository(repo)
    manifest = read_json(repo / "repository.json")
    write_json(repo / "repository.json", {**manifest, "signature": "0" * 64})
    with pytest.raises(PromotionRefused, match="signature does not match"):
        verify_local_repository(repo)


def test_a_quoted_duplicate_tier_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"duplicate key '2' \(first on line 2\)"):
        parse_yaml('tiers:\n  2: {f1_gate: 0.9}\n  "2": {f1_gate: 0.01}\n', "taxonomy.yaml")


def test_two_suites_with_one_name_are_refused(tmp_path: Path) -> None:
    from tiergate.paths import project_path
    from tiergate.regression import load_suites

    suites = tmp_path / "regression"
    shutil.copytree(project_path("config/regression"), suites)
    (suites / "positives_extra.yaml").write_text(
        "suite: positives\ndescription: d\npolicy: all\nvectors:\n"
        "  - {id: extra-1, text: hi there, context: general/message, not_flag: [spam]}\n"
    )
    with pytest.raises(ConfigError, match="duplicate suite name 'positives'"):
        load_suites(suites, load_taxonomy())


def test_a_metric_just_below_its_floor_fails_however_it_rounds() -> None:
    from tiergate.gate import Rule, rule_status

    policy = configured_policy(load_taxonomy(), load_profile("local"))
    rule = Rule(rule="csam.f1 >= 0.93", category="csam", metric="f1", value=0.92996, floor=0.93, status="pass", support=50)
    assert rule_status(rule, policy) == "fail"


def test_one_publisher_per_version_on_a_local_store(tmp_path: Path) -> None:
    import fcntl

    settings = store_settings(tmp_path)
    repo = make_repository(tmp_path / "r", "v1")
    version_root = store_root(tmp_path) / "tiergate" / "v1"
    version_root.mkdir(parents=True)
    with (version_root / ".publish.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(PublishError, match="being published by another process"):
            publish_repository(repo, settings)
    stale = version_root / ".staging-abc-123" / "classifier"
    stale.mkdir(parents=True)  # a publisher killed mid-upload
    publish_repository(repo, settings)
    assert not (version_root / ".staging-abc-123").exists()


def test_fetch_needs_a_published_version_and_an_empty_destination(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)
    result = publish_repository(make_repository(tmp_path / "r", "v1"), settings)
    busy = tmp_path / "busy"
    (busy / "evil").mkdir(parents=True)
    with pytest.raises(PromotionRefused, match="must be an empty folder"):
        fetch_repository(result["uri"], busy, settings)
    (store_root(tmp_path) / "tiergate" / "v1" / "published.json").unlink()
    with pytest.raises(PromotionRefused, match="is not published with this digest"):
        fetch_repository(result["uri"], tmp_path / "empty", settings)


def test_rollback_refuses_a_target_outside_the_configured_store(tmp_path: Path, gitops: PromoteSettings) -> None:
    from tiergate.store import verify_published

    settings = store_settings(tmp_path)
    result = publish_repository(make_repository(tmp_path / "r", "v1"), settings)
    elsewhere = result["uri"].replace("pvc://tiergate-models/store/", "pvc://other-claim/x/")
    with pytest.raises(PromotionRefused, match="is not in the configured model store"):
        verify_published(elsewhere, settings)
    climbing = result["uri"].replace("pvc://tiergate-models/store/", "pvc://tiergate-models/store/../elsewhere/")
    with pytest.raises(PromotionRefused, match="is not in the configured model store"):  # a prefix that climbs out
        verify_published(climbing, settings)


def test_unreadable_gate_and_special_files_are_one_line_refusals(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "r", "v1")
    (repo / GATE).write_bytes(b"[" * 100000)
    write_manifest(repo, "v1", read_json(repo / "repository.json")["gate_digest"])
    with pytest.raises(PromotionRefused, match=r"gate\.json is not valid JSON"):
        verify_local_repository(repo)
    repo = make_repository(tmp_path / "r2", "v1")
    fifo = repo / "classifier" / "1" / "pipe"
    os.mkfifo(fifo)
    manifest = read_json(repo / "repository.json")
    files = {**manifest["files"], "classifier/1/pipe": "0" * 64}
    from tiergate.hashing import sha256_json

    write_json(repo / "repository.json", {**manifest, "files": files, "digest": sha256_json(files)})
    with pytest.raises(PromotionRefused, match="pipe is not a regular file"):  # never a hang reading it
        verify_local_repository(repo)


def test_outputs_never_overlap_their_inputs(tmp_path: Path) -> None:
    from tiergate.outputs import check_apart

    source = tmp_path / "export"
    source.mkdir()
    for out in (source, source / "inner", tmp_path / "export" / ".." / "export", tmp_path):
        with pytest.raises(OutputError, match="overlaps the input"):
            check_apart(out, [source])
    check_apart(tmp_path / "evaluation", [source, None])


def test_serve_never_deletes_the_repository_it_serves(tmp_path: Path) -> None:
    run = tmp_path / "run"
    repo = make_repository(run / "model_repository", "v1")
    before = snapshot(repo)
    result = cli("serve", "--model-repo", str(repo), "--work-dir", str(repo))
    assert_one_line_refusal(result, "overlaps the model repository")
    assert snapshot(repo) == before


def test_a_run_id_cannot_inject_lines_into_the_promotion_commit(tmp_path: Path, gitops: PromoteSettings) -> None:
    settings = store_settings(tmp_path)
    repo = make_repository(tmp_path / "r", "v1")
    published = publish_repository(repo, settings)
    with pytest.raises(PromotionRefused, match="must be one printable line"):
        promote(gitops, settings, _evaluation_of(repo, tmp_path), repo, published, "r1\ngate: PROMOTE, macro F1 0.999")
    assert not Path(gitops.repo_url).exists()
