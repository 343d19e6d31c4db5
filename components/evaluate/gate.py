"""The promotion decision: tier F1 gates, recall floors, and the regression vectors.

`gate.json` lists every rule with its numbers and status, every failure, and the digests
of exactly what was judged (model file, thresholds, data, vectors). There is no sentinel
file: the decision is the rules.
"""

from __future__ import annotations

from typing import Any

from tiergate.hashing import sha256_json
from tiergate.profiles import EvaluateSettings
from tiergate.taxonomy import Taxonomy


def decide(
    taxonomy: Taxonomy, metrics: dict[str, Any], regression: dict[str, Any], settings: EvaluateSettings, judged: dict[str, str]
) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    for name, entry in metrics["per_category"].items():
        tier = taxonomy.tier_of(name)
        checks = [("f1", entry["f1"], tier.f1_gate)]
        if tier.recall_floor is not None:
            checks.append(("recall", entry["recall"], tier.recall_floor))
        for metric, value, floor in checks:
            status = "not_measurable" if not entry["measurable"] else "pass" if value >= floor else "fail"
            rules.append(
                {
                    "rule": f"{name}.{metric} >= {floor}",
                    "category": name,
                    "tier": entry["tier"],
                    "metric": metric,
                    "value": round(value, 4),
                    "floor": floor,
                    "support": entry["support"],
                    "status": status,
                }
            )
    for suite, result in regression["suites"].items():
        rules.append(
            {
                "rule": f"regression.{suite}",
                "metric": "vectors",
                "value": result["hard_passed"],
                "floor": result["required"],
                "status": "pass" if result["passed"] else "fail",
                "failed_vectors": [v["id"] for v in result["vectors"] if v["status"] == "fail"],
            }
        )
    blocking = {"fail"} | ({"not_measurable"} if settings.not_measurable == "fail" else set())
    failures = [rule for rule in rules if rule["status"] in blocking]
    warnings = [rule for rule in rules if rule["status"] == "not_measurable" and rule not in failures]
    passed = not failures
    return {
        "passed": passed,
        "decision": "promote" if passed else "reject",
        "failures": failures,
        "warnings": warnings,
        "rules": rules,
        "summary": {
            "macro_f1": round(metrics["macro_f1"], 4),
            "micro_f1": round(metrics["micro_f1"], 4),
            "tiers": {str(tier): value for tier, value in metrics["tiers"].items()},
            "categories_failing": sorted({rule["category"] for rule in failures if "category" in rule}),
            "not_measurable": metrics["not_measurable"],
            "regression": regression["summary"],
            "regression_xpass": [vid for result in regression["suites"].values() for vid in result["xpass"]],
        },
        "policy": {
            "tiers": {str(t): {"f1_gate": p.f1_gate, "recall_floor": p.recall_floor} for t, p in taxonomy.tiers.items()},
            "not_measurable": settings.not_measurable,
        },
        "judged": judged,
    }


def gate_digest(gate: dict[str, Any]) -> str:
    """The identity of what a gate judged (model, thresholds, tokenizer, data, vectors, profile)."""
    return sha256_json(gate["judged"])
