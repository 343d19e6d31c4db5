"""The gate record: the promotion decision, every rule behind it, and what was judged.

One module owns the gate's model, its digest and the refusal: evaluation writes a
`GateRecord`, and packaging, publishing and promotion read it through `load_gate` and
refuse with `require_passed`. There is no sentinel file (docs/lessons.md#gate-sentinel):
the decision is the rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tiergate.artifacts import GATE_FILE
from tiergate.errors import PromotionRefused
from tiergate.hashing import read_json, sha256_json, write_json
from tiergate.profiles import EvaluateSettings
from tiergate.strict import format_validation_error
from tiergate.taxonomy import Taxonomy

RuleStatus = Literal["pass", "fail", "not_measurable"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rule(_Record):
    """One gate rule with its number and floor: a category metric or a regression suite."""

    rule: str
    metric: str
    value: float | int | None
    floor: float | int
    status: RuleStatus
    category: str | None = None
    tier: int | None = None
    support: int | None = None
    failed_vectors: list[str] | None = None


class Judged(_Record):
    """Digests of exactly what the gate judged; packaging compares them with the files it ships."""

    model_file: str
    model_sha256: str
    thresholds_sha256: str
    tokenizer_sha256: str
    dataset_sha256: str
    taxonomy_sha256: str
    regression_sha256: str
    profile: str
    profile_sha256: str


class GateSummary(_Record):
    macro_f1: float
    micro_f1: float
    tiers: dict[str, dict[str, Any]]
    categories_failing: list[str]
    not_measurable: list[str]
    regression: dict[str, Any]
    regression_xpass: list[str]


class GateRecord(_Record):
    """The content of `gate.json`."""

    passed: bool
    decision: Literal["promote", "reject"]
    failures: list[Rule]
    warnings: list[Rule]
    rules: list[Rule]
    summary: GateSummary
    policy: dict[str, Any]
    judged: Judged
    smoke_test: bool = False

    def as_json(self) -> dict[str, Any]:
        """The record as written to `gate.json` (fields that were never set stay absent)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def digest(self) -> str:
        """The identity of what this gate judged (model, thresholds, tokenizer, data, vectors, profile)."""
        return sha256_json(self.judged.model_dump(mode="json"))

    def require_passed(self, consequence: str) -> None:
        """Raise PromotionRefused naming the first failing rules unless the gate passed."""
        if not self.passed:
            failing = ", ".join(rule.rule for rule in self.failures[:5])
            raise PromotionRefused(f"the gate did not pass ({failing}); {consequence}")


def load_gate(evaluation_dir: Path) -> GateRecord:
    """Read `<evaluation_dir>/gate.json`; a missing or malformed record is a refusal, never a default."""
    path = Path(evaluation_dir) / GATE_FILE
    if not path.is_file():
        raise PromotionRefused(f"{path} not found: no gate record, nothing can be promoted")
    try:
        return GateRecord.model_validate(read_json(path))
    except ValueError as error:  # JSON syntax errors and ValidationError both derive from it
        detail = format_validation_error(error) if isinstance(error, ValidationError) else str(error)
        raise PromotionRefused(f"{path} is not a valid gate record: {detail}") from None


def write_gate(evaluation_dir: Path, gate: GateRecord) -> None:
    write_json(Path(evaluation_dir) / GATE_FILE, gate.as_json())


def category_rules(taxonomy: Taxonomy, metrics: dict[str, Any]) -> list[Rule]:
    """Per category: F1 against its tier's gate, and recall against the tier's floor where one is set."""
    rules = []
    for name, entry in metrics["per_category"].items():
        tier = taxonomy.tier_of(name)
        checks = [("f1", entry["f1"], tier.f1_gate)]
        if tier.recall_floor is not None:
            checks.append(("recall", entry["recall"], tier.recall_floor))
        for metric, value, floor in checks:
            status: RuleStatus = "not_measurable" if not entry["measurable"] else "pass" if value >= floor else "fail"
            rules.append(
                Rule(
                    rule=f"{name}.{metric} >= {floor}",
                    category=name,
                    tier=entry["tier"],
                    metric=metric,
                    value=round(value, 4),
                    floor=floor,
                    support=entry["support"],
                    status=status,
                )
            )
    return rules


def regression_rules(regression: dict[str, Any]) -> list[Rule]:
    """One rule per regression suite: its policy passed or not, with the failing vector ids."""
    return [
        Rule(
            rule=f"regression.{suite}",
            metric="vectors",
            value=result["hard_passed"],
            floor=result["required"],
            status="pass" if result["passed"] else "fail",
            failed_vectors=[vector["id"] for vector in result["vectors"] if vector["status"] == "fail"],
        )
        for suite, result in regression["suites"].items()
    ]


def decide(
    taxonomy: Taxonomy,
    metrics: dict[str, Any],
    regression: dict[str, Any],
    settings: EvaluateSettings,
    judged: Judged,
    smoke_test: bool = False,
) -> GateRecord:
    """Judge the tier gates, recall floors and regression suites; `not_measurable` blocks only when configured to."""
    rules = category_rules(taxonomy, metrics) + regression_rules(regression)
    blocking = {"fail"} | ({"not_measurable"} if settings.not_measurable == "fail" else set())
    failures = [rule for rule in rules if rule.status in blocking]
    warnings = [rule for rule in rules if rule.status == "not_measurable" and rule not in failures]
    passed = not failures
    summary = GateSummary(
        macro_f1=round(metrics["macro_f1"], 4),
        micro_f1=round(metrics["micro_f1"], 4),
        tiers={str(tier): value for tier, value in metrics["tiers"].items()},
        categories_failing=sorted({rule.category for rule in failures if rule.category is not None}),
        not_measurable=metrics["not_measurable"],
        regression=regression["summary"],
        regression_xpass=[vid for result in regression["suites"].values() for vid in result["xpass"]],
    )
    policy = {
        "tiers": {str(t): {"f1_gate": p.f1_gate, "recall_floor": p.recall_floor} for t, p in taxonomy.tiers.items()},
        "not_measurable": settings.not_measurable,
    }
    record = GateRecord(
        passed=passed,
        decision="promote" if passed else "reject",
        failures=failures,
        warnings=warnings,
        rules=rules,
        summary=summary,
        policy=policy,
        judged=judged,
        smoke_test=smoke_test,
    )
    return record
