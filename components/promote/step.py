"""The promote step: only a passing gate on exactly the judged artifacts reaches the GitOps repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiergate.artifacts import REPOSITORY_MANIFEST
from tiergate.components.promote.gitops import GitOpsError, commit_and_push, ensure_local_repository, history
from tiergate.errors import PromotionRefused
from tiergate.gate import GateRecord, load_gate
from tiergate.hashing import read_json
from tiergate.profiles import PromoteSettings


def check_promotable(gate: GateRecord, repository_manifest: dict[str, Any], published: dict[str, Any]) -> None:
    """Refuse unless the gate passed and the published repository is the one built from what it judged."""
    gate.require_passed("nothing is promoted")
    if repository_manifest.get("gate_digest") != gate.digest():
        raise PromotionRefused("the model repository was not built from the artifacts this gate judged; refusing")
    if published.get("digest") != repository_manifest.get("digest"):
        raise PromotionRefused(
            f"published digest {str(published.get('digest'))[:12]} differs from the repository "
            f"{str(repository_manifest.get('digest'))[:12]}; refusing"
        )


def commit_message(gate: GateRecord, published: dict[str, Any], run_id: str) -> str:
    summary = gate.summary
    tiers = ", ".join(
        f"T{tier} {entry['macro_f1']:.3f}" for tier, entry in summary.tiers.items() if entry["macro_f1"] is not None
    )
    regression = ", ".join(f"{name} {value}" for name, value in summary.regression.items())
    return "\n".join(
        [
            f"promote {published['model_name']} {published['version']} ({published['digest'][:12]})",
            "",
            f"gate: {gate.decision.upper()}, macro F1 {summary.macro_f1}, micro F1 {summary.micro_f1}",
            f"tiers: {tiers}",
            f"regression: {regression}",
            f"run: {run_id}",
            f"storageUri: {published['uri']}",
            f"gate digest: {gate.digest()}",
        ]
    )


def _set_model(published: dict[str, Any]) -> Any:
    def edit(values: dict[str, Any]) -> dict[str, Any] | None:
        model = dict(values.get("model") or {})
        if model.get("version") == published["version"] and model.get("digest") == published["digest"]:
            return None  # already promoted: re-running is a no-op
        model.update(
            {
                "name": model.get("name", published["model_name"]),
                "version": published["version"],
                "storageUri": published["uri"],
                "digest": published["digest"],
            }
        )
        return {**values, "model": model}

    return edit


def promote(
    settings: PromoteSettings, evaluation_dir: Path, repository_dir: Path, published: dict[str, Any], run_id: str
) -> dict[str, Any]:
    gate = load_gate(Path(evaluation_dir))
    manifest = read_json(Path(repository_dir) / REPOSITORY_MANIFEST)
    check_promotable(gate, manifest, published)
    ensure_local_repository(settings)
    branch = f"promote/{published['version']}" if settings.mode == "branch" else None
    return commit_and_push(settings, _set_model(published), commit_message(gate, published, run_id), branch)


def rollback(settings: PromoteSettings, to_version: str) -> dict[str, Any]:
    """Restore the model block of an earlier promotion as a new commit (history is never rewritten)."""
    promotions = history(settings)
    earlier = next((entry for entry in promotions if entry["version"] == to_version), None)
    if earlier is None:
        known = sorted({str(entry["version"]) for entry in promotions if entry["version"]})
        raise GitOpsError(f"version {to_version!r} was never promoted here; known: {', '.join(known) or 'none'}")
    published = {
        "version": earlier["version"],
        "digest": earlier["digest"],
        "uri": earlier["storageUri"],
        "model_name": "tiergate",
    }
    message = f"rollback to {to_version} ({str(earlier['digest'])[:12]})\n\nrestores the model block of {earlier['commit'][:12]}"
    return commit_and_push(settings, _set_model(published), message)
