"""Running regression suites against a classifier: the gate's per-vector exam.

A required vector (written as required, or a known gap its suite promotes) passes or fails;
a tracked known gap is an xfail or, when the model gets it right, an xpass. Xpasses are listed
per suite, in the summary line the report and gate record carry, and under `promotable`: the
ids a reviewer may add to the suite's `promote_xpass` so the next model must keep them.

The suites' model and loader (`Suite`, `load_suites`, `vector_texts`) live in
`tiergate.regression` so merge can read vector texts without importing this step;
they are re-exported here for existing callers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tiergate.hashing import sha256_json
from tiergate.records import Context
from tiergate.regression import Check, MinPass, Suite, Vector, load_suites, vector_texts
from tiergate.taxonomy import Taxonomy

__all__ = ["Check", "Classifier", "MinPass", "Suite", "Vector", "load_suites", "run_suites", "vector_texts"]

Classifier = Callable[[list[str], list[Context]], tuple[np.ndarray, np.ndarray]]


def suite_summary(entry: dict[str, Any]) -> str:
    """`37/37 (need 37)`, and the known gaps that passed, which the suite's `promote_xpass` can make required."""
    line = f"{entry['hard_passed']}/{entry['hard_total']} (need {entry['required']})"
    return f"{line}, xpass {', '.join(entry['xpass'])}" if entry["xpass"] else line


def run_suites(suites: Sequence[Suite], taxonomy: Taxonomy, classify: Classifier) -> dict[str, Any]:
    """Run every check in one batch; `classify(texts, contexts) -> (scores, flags)`."""
    pairs: list[tuple[str, Context]] = []
    for suite in suites:
        for vector in suite.vectors:
            for check in vector.all_checks():
                pairs.append((vector.text, Context.parse(check.context, taxonomy.contexts.audiences, taxonomy.contexts.surfaces)))
    scores, flags = classify([text for text, _ in pairs], [context for _, context in pairs])
    labels = taxonomy.labels
    row = 0
    results: dict[str, Any] = {"suites": {}, "passed": True}
    for suite in suites:
        vectors = []
        for vector in suite.vectors:
            outcomes = []
            for check in vector.all_checks():
                flagged = [labels[c] for c in np.flatnonzero(flags[row])]
                named = {name: round(float(scores[row, labels.index(name)]), 4) for name in check.flag + check.not_flag}
                missing = [name for name in check.flag if name not in flagged]
                unwanted = [name for name in check.not_flag if name in flagged]
                outcomes.append(
                    {
                        "context": check.context,
                        "flagged": flagged,
                        "scores": named,
                        "missing": missing,
                        "unwanted": unwanted,
                        "passed": not missing and not unwanted,
                    }
                )
                row += 1
            passed = all(outcome["passed"] for outcome in outcomes)
            status = ("xpass" if passed else "xfail") if vector.expected == "known_gap" else ("pass" if passed else "fail")
            vectors.append({"id": vector.id, "text": vector.text, "status": status, "checks": outcomes})
        hard = [v for v in vectors if v["status"] in ("pass", "fail")]
        hard_passed = sum(v["status"] == "pass" for v in hard)
        required = suite.required
        suite_passed = hard_passed >= required
        results["suites"][suite.suite] = {
            "description": suite.description,
            "policy": suite.policy if suite.policy == "all" else suite.policy.model_dump(),
            "passed": suite_passed,
            "required": required,
            "hard_passed": hard_passed,
            "hard_total": len(hard),
            "xfail": sum(v["status"] == "xfail" for v in vectors),
            "xpass": [v["id"] for v in vectors if v["status"] == "xpass"],
            "promoted": list(suite.promote_xpass),
            "vectors": vectors,
        }
        results["passed"] = results["passed"] and suite_passed
    results["summary"] = {name: suite_summary(entry) for name, entry in results["suites"].items()}
    results["promotable"] = {name: entry["xpass"] for name, entry in results["suites"].items() if entry["xpass"]}
    results["sha256"] = sha256_json([suite.model_dump(mode="json") for suite in suites])
    return results
