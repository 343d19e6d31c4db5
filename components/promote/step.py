"""The promote step: only a trusted, passing gate on exactly the judged bytes reaches the GitOps repository.

Before any commit, promotion verifies (with `tiergate.trust`): the evaluation's gate record
(decision recomputed, policy as configured, signature when a key is set), the local repository
built from it, and the published copy in the store that the commit will point to. Rollback
re-verifies the target version's stored copy and gate the same way; a version that cannot be
verified (deleted, corrupted, never published) cannot be rolled back to.

The commit sets the values' `model` block, which the serving chart renders as the ModerationModel's
spec.model: the version, its content-addressed storageUri, the manifest digest, and the digest of
the gate record that manifest names (`gateDigest`). The tiergate operator verifies the stored copy
against both before it deploys anything, and rolls the version out; promotion knows nothing of traffic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiergate.components.promote.gitops import GitOpsError, commit_and_push, ensure_local_repository, history
from tiergate.errors import PromotionRefused
from tiergate.gate import GatePolicy, GateRecord, load_gate, require_trusted
from tiergate.profiles import PromoteSettings, PublishSettings
from tiergate.store import verify_published
from tiergate.trust import VerifiedRepository, verify_local_repository


def check_local(gate: GateRecord, repository_dir: Path, policy: GatePolicy | None) -> VerifiedRepository:
    """Refuse unless the gate is trusted and passed and the local repository was built from exactly it."""
    require_trusted(gate, "nothing is promoted", policy)
    local = verify_local_repository(repository_dir, policy=policy)
    if local.gate.digest() != gate.digest():
        raise PromotionRefused("the model repository was not built from the artifacts this gate judged; refusing")
    return local


def check_promotable(
    gate: GateRecord, repository_dir: Path, published: dict[str, Any], store: PublishSettings, policy: GatePolicy | None
) -> VerifiedRepository:
    """`check_local`, and the published copy the commit will point to is that repository, intact."""
    local = check_local(gate, repository_dir, policy)
    if published.get("digest") != local.manifest.digest:
        raise PromotionRefused(
            f"published digest {str(published.get('digest'))[:12]} differs from the repository "
            f"{local.manifest.digest[:12]}; refusing"
        )
    stored = verify_published(str(published.get("uri")), store, policy)
    if stored.manifest.digest != local.manifest.digest:
        raise PromotionRefused(f"{published.get('uri')} does not hold the repository {local.manifest.digest[:12]}; refusing")
    return stored


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
            f"gate policy: {gate.policy_sha256[:12]} ({policy_line(gate.policy)})",
            f"lineage: data {gate.judged.dataset_sha256[:12]} -> checkpoint {gate.judged.checkpoint_sha256[:12]} "
            f"-> export {gate.judged.export_sha256[:12]}",
        ]
    )


def policy_line(policy: GatePolicy) -> str:
    """The floors in one line, so a changed gate shows up in the promotion commit itself."""
    tiers = "; ".join(
        f"T{tier} f1>={floor.f1_gate}" + (f" recall>={floor.recall_floor}" if floor.recall_floor is not None else "")
        for tier, floor in sorted(policy.tiers.items())
    )
    suites = ", ".join(f"{name}>={required}" for name, required in sorted(policy.regression.items()))
    return f"{tiers}; not_measurable={policy.not_measurable}; min_support={policy.min_support}; regression {suites}"


def _set_model(published: dict[str, Any], gate_digest: str) -> Any:
    """The values edit: `model` names the published version, its manifest digest and its gate record's digest."""

    def edit(values: dict[str, Any]) -> dict[str, Any] | None:
        model = dict(values.get("model") or {})
        wanted = {"version": published["version"], "digest": published["digest"], "gateDigest": gate_digest}
        if all(model.get(key) == value for key, value in wanted.items()):
            return None  # already promoted: re-running is a no-op
        model.update(
            {
                "name": model.get("name", published["model_name"]),
                "version": published["version"],
                "storageUri": published["uri"],
                "digest": published["digest"],
                "gateDigest": gate_digest,
            }
        )
        return {**values, "model": model}

    return edit


def promote(
    settings: PromoteSettings,
    store: PublishSettings,
    evaluation_dir: Path,
    repository_dir: Path,
    published: dict[str, Any],
    run_id: str,
    policy: GatePolicy | None = None,
) -> dict[str, Any]:
    """Verify everything (see the module docstring), then commit the new version to the values file."""
    if not run_id or len(run_id) > 200 or any(ord(char) < 32 for char in run_id):
        raise PromotionRefused(f"run id {run_id[:40]!r} must be one printable line (it is written into the commit message)")
    gate = load_gate(Path(evaluation_dir))
    stored = check_promotable(gate, Path(repository_dir), published, store, policy)
    ensure_local_repository(settings)
    branch = f"promote/{published['version']}" if settings.mode == "branch" else None
    edit = _set_model(published, stored.manifest.gate_digest)
    return commit_and_push(settings, edit, commit_message(gate, published, run_id), branch)


def rollback(settings: PromoteSettings, store: PublishSettings, to_version: str) -> dict[str, Any]:
    """Restore the model block of an earlier promotion as a new commit (history is never rewritten).

    The target is re-verified in the store first (files, manifest, its own gate record); its
    gate is checked for consistency and signature, not against today's policy: rollback returns
    to a version that passed the gate of its day.
    """
    promotions = history(settings)
    earlier = next((entry for entry in promotions if entry["version"] == to_version), None)
    if earlier is None:
        known = sorted({str(entry["version"]) for entry in promotions if entry["version"]})
        raise GitOpsError(f"version {to_version!r} was never promoted here; known: {', '.join(known) or 'none'}")
    try:
        verified = verify_published(str(earlier["storageUri"]), store)
    except PromotionRefused as error:
        raise PromotionRefused(f"cannot roll back to {to_version}: {error}") from None
    if verified.manifest.digest != earlier["digest"]:
        raise PromotionRefused(
            f"cannot roll back to {to_version}: the store holds {verified.manifest.digest[:12]}, "
            f"the promotion recorded {str(earlier['digest'])[:12]}"
        )
    # Promotions before the ModerationModel recorded no gateDigest: the verified manifest names it.
    if earlier.get("gateDigest") not in (None, verified.manifest.gate_digest):
        raise PromotionRefused(
            f"cannot roll back to {to_version}: its manifest names gate record {verified.manifest.gate_digest[:12]}, "
            f"the promotion recorded {str(earlier['gateDigest'])[:12]}"
        )
    published = {
        "version": earlier["version"],
        "digest": earlier["digest"],
        "uri": earlier["storageUri"],
        "model_name": verified.manifest.model_name,
    }
    message = f"rollback to {to_version} ({str(earlier['digest'])[:12]})\n\nrestores the model block of {earlier['commit'][:12]}"
    return commit_and_push(settings, _set_model(published, verified.manifest.gate_digest), message)
