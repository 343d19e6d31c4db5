"""Small model repositories with a real, passing gate record: for the trust-chain and store tests.

The gate comes from `tiergate.gate.decide` under the configured policy, with metrics that meet
every floor, so it is exactly what evaluation would write for a model that passed; the files
the gate judged are the repository's own. Tests then break one link at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiergate.artifacts import REPOSITORY_MANIFEST, TOKENIZER_FILE, RepositoryLayout
from tiergate.gate import GateRecord, Judged, configured_policy, decide, sign
from tiergate.hashing import folder_digests, sha256_file, sha256_json, write_json
from tiergate.profiles import load_profile
from tiergate.taxonomy import load_taxonomy
from tiergate.trust import sign_manifest


def passing_gate(judged: Judged) -> GateRecord:
    taxonomy, profile = load_taxonomy(), load_profile("local")
    policy = configured_policy(taxonomy, profile)
    support = policy.min_support + 5
    metrics: dict[str, Any] = {
        "per_category": {
            name: {"f1": 0.99, "recall": 0.99, "support": support, "tier": tier, "measurable": True}
            for name, tier in policy.categories.items()
        },
        "macro_f1": 0.9512,
        "micro_f1": 0.96,
        "tiers": {tier: {"macro_f1": 0.95} for tier in policy.tiers},
        "not_measurable": [],
    }
    regression = {
        "suites": {suite: {"hard_passed": required, "vectors": [], "xpass": []} for suite, required in policy.regression.items()},
        "summary": {suite: f"{required}/{required} (need {required})" for suite, required in policy.regression.items()},
    }
    return decide(policy, metrics, regression, judged)


def judged_for(layout: RepositoryLayout) -> Judged:
    taxonomy, profile = load_taxonomy(), load_profile("local")
    return Judged(
        model_file="model_fp16.onnx",
        model_sha256=sha256_file(layout.classifier_onnx),
        thresholds_sha256=sha256_file(layout.thresholds),
        tokenizer_sha256=sha256_file(layout.tokenizer_dir / TOKENIZER_FILE),
        dataset_sha256="d" * 64,
        checkpoint_sha256="c" * 64,
        export_sha256="e" * 64,
        taxonomy_sha256=taxonomy.labels_sha256,
        regression_sha256="r" * 64,
        profile=profile.name,
        profile_sha256=profile.sha256,
    )


def write_manifest(root: Path, version: str, gate_digest: str, model_name: str = "tiergate") -> dict[str, Any]:
    """`repository.json` over every file under `root`, as the package step writes it."""
    files = folder_digests(root, exclude=frozenset({REPOSITORY_MANIFEST}))
    manifest = {
        "model_name": model_name,
        "model_version": version,
        "variant": "local",
        "labels": load_taxonomy().labels,
        "taxonomy_sha256": load_taxonomy().labels_sha256,
        "gate_digest": gate_digest,
        "gate_summary": {},
        "files": files,
        "digest": sha256_json(files),
    }
    manifest = sign_manifest(manifest)
    write_json(root / REPOSITORY_MANIFEST, manifest)
    return manifest


def make_repository(root: Path, version: str, payload: str = "weights") -> Path:
    """A minimal model repository (judged files, a config, the gate record, the manifest) that verifies."""
    layout = RepositoryLayout(root)
    for path, text in (
        (layout.classifier_onnx, payload),
        (layout.thresholds, '{"thresholds": "' + payload + '"}'),
        (layout.tokenizer_dir / TOKENIZER_FILE, '{"tokenizer": 1}'),
        (layout.config("classifier"), 'name: "classifier"\n'),
        (layout.labels, "\n".join(load_taxonomy().labels) + "\n"),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    gate = sign(passing_gate(judged_for(layout)))
    write_json(layout.gate, gate.as_json())
    write_manifest(root, version, gate.digest())
    return root


def lenient(gate: GateRecord, evaluation: Path) -> GateRecord:
    """A real evaluation's numbers judged under a policy with every floor at zero: a consistent, passing record.

    The untrained tiny model fails the real gate; this lets the serving and lineage tests exercise the
    trusted path (package → verify → serve) on real files without pretending the model is good.
    """
    from tiergate.gate import TierFloor
    from tiergate.hashing import read_json

    policy = gate.policy.model_copy(
        update={
            "tiers": {tier: TierFloor(f1_gate=0.0, recall_floor=None) for tier in gate.policy.tiers},
            "regression": dict.fromkeys(gate.policy.regression, 0),
        }
    )
    metrics, regression = read_json(evaluation / "metrics.json"), read_json(evaluation / "regression.json")
    return decide(policy, metrics, regression, gate.judged)
