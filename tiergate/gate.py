"""The gate record: the promotion decision, every rule behind it, and what was judged.

One module owns the gate's model, its policy, its digest and the refusal: evaluation writes a
`GateRecord`, and packaging, publishing, promotion, rollback and serving read it through
`load_gate` / `parse_gate` and trust it only after `verify_decision`. There is no sentinel
file (docs/lessons.md#gate-sentinel) and no field is believed because it says so: the decision
is recomputed from the recorded numbers and the configured policy, the digest covers the
whole record, and with `TIERGATE_GATE_KEY` set (a Kubernetes Secret) the record is signed
with HMAC-SHA256 and an unsigned or re-signed record is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tiergate.artifacts import GATE_FILE
from tiergate.errors import PromotionRefused
from tiergate.hashing import canonical_json, read_json, sha256_json, write_json
from tiergate.paths import project_path
from tiergate.profiles import EvaluateSettings, Profile
from tiergate.regression import Suite, load_suites
from tiergate.strict import format_validation_error
from tiergate.taxonomy import Taxonomy

RuleStatus = Literal["pass", "fail", "not_measurable"]
SIGNING_KEY_ENV = "TIERGATE_GATE_KEY"


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
    interval: list[float] | None = None  # comparison rules: the paired-bootstrap interval of the F1 delta


class TierFloor(_Record):
    f1_gate: float
    recall_floor: float | None


class ComparisonFloor(_Record):
    """The taxonomy's `comparison`: the largest F1 drop against the previous model a listed category may show."""

    max_f1_drop: float
    categories: list[str]


class GatePolicy(_Record):
    """The configured rules a model is judged by; editing the taxonomy's gates or a suite changes it."""

    tiers: dict[str, TierFloor]
    categories: dict[str, int]  # category -> tier
    not_measurable: Literal["fail", "warn"]
    min_support: int
    regression: dict[str, int]  # suite -> hard vectors required to pass
    comparison: ComparisonFloor | None = None

    def sha256(self) -> str:
        data = self.model_dump(mode="json")
        if data["comparison"] is None:
            del data["comparison"]  # a policy without a comparison hashes as before the rule existed
        return sha256_json(data)

    def floors(self) -> dict[str, float | int]:
        """Every rule this policy requires, by rule name, with its floor."""
        floors: dict[str, float | int] = {}
        for category, tier in self.categories.items():
            policy = self.tiers[str(tier)]
            floors[f"{category}.f1 >= {policy.f1_gate}"] = policy.f1_gate
            if policy.recall_floor is not None:
                floors[f"{category}.recall >= {policy.recall_floor}"] = policy.recall_floor
        for suite, required in self.regression.items():
            floors[f"regression.{suite}"] = required
        floors.update(comparison_floors(self))
        return floors

    def blocking(self) -> set[str]:
        return {"fail"} | ({"not_measurable"} if self.not_measurable == "fail" else set())

    def differences(self, other: GatePolicy) -> list[str]:
        """Top-level keys whose values differ, e.g. `tiers.1`, `regression.positives`."""
        mine, theirs = self.model_dump(mode="json"), other.model_dump(mode="json")
        changed = []
        for key in mine:
            if isinstance(mine[key], dict) and isinstance(theirs[key], dict):
                for inner in sorted(set(mine[key]) | set(theirs[key])):
                    if mine[key].get(inner) != theirs[key].get(inner):
                        changed.append(f"{key}.{inner}")
            elif mine[key] != theirs[key]:
                changed.append(key)
        return changed


class Judged(_Record):
    """Digests of exactly what the gate judged, and the chain it came from (data → checkpoint → export)."""

    model_file: str
    model_sha256: str
    thresholds_sha256: str
    tokenizer_sha256: str
    dataset_sha256: str
    checkpoint_sha256: str
    export_sha256: str
    taxonomy_sha256: str
    regression_sha256: str
    profile: str
    profile_sha256: str
    compared_with: str | None = None  # the previous model the comparison rule judged against: "<version>@<repository digest>"


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
    policy: GatePolicy
    policy_sha256: str
    judged: Judged
    smoke_test: bool = False
    signature: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The record as written to `gate.json` (fields that were never set stay absent)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def unsigned_json(self) -> dict[str, Any]:
        return {key: value for key, value in self.as_json().items() if key != "signature"}

    def digest(self) -> str:
        """The identity of the whole record: decision, rules, numbers, policy and what was judged."""
        return sha256_json(self.unsigned_json())

    def require_passed(self, consequence: str) -> None:
        """Raise PromotionRefused naming the first failing rules unless the gate passed."""
        if not self.passed:
            failing = ", ".join(rule.rule for rule in self.failures[:5])
            raise PromotionRefused(f"the gate did not pass ({failing}); {consequence}")


# ---- policy and rules ----------------------------------------------------------------------------


def gate_policy(taxonomy: Taxonomy, settings: EvaluateSettings, min_support: int, suites: Sequence[Suite]) -> GatePolicy:
    """The policy as configured now: the taxonomy's tier gates, the profile's switches, the suites' requirements."""
    return GatePolicy(
        tiers={
            str(tier): TierFloor(f1_gate=policy.f1_gate, recall_floor=policy.recall_floor)
            for tier, policy in taxonomy.tiers.items()
        },
        categories=dict(zip(taxonomy.labels, taxonomy.tier_vector(), strict=True)),
        not_measurable=settings.not_measurable,
        min_support=min_support,
        regression={suite.suite: suite.required for suite in suites},
        comparison=comparison_floor(taxonomy),
    )


def configured_policy(taxonomy: Taxonomy, profile: Profile, regression_dir: Path | None = None) -> GatePolicy:
    """`gate_policy` from the taxonomy, the profile and the regression suites it names."""
    directory = regression_dir or project_path(profile.evaluate.regression_dir)
    suites = load_suites(directory, taxonomy, profile.evaluate.regression_min_pass_rate)
    return gate_policy(taxonomy, profile.evaluate, profile.merge.min_test_support, suites)


def rule_status(rule: Rule, policy: GatePolicy) -> RuleStatus:
    """A category with too few test positives cannot be measured; otherwise the value meets its floor or not."""
    if rule.metric == COMPARISON_METRIC:
        return comparison_status(rule)
    if rule.category is not None and (rule.support is None or rule.support < policy.min_support):
        return "not_measurable"
    if rule.value is None:
        return "not_measurable"
    return "pass" if rule.value >= rule.floor else "fail"


def category_rules(policy: GatePolicy, metrics: dict[str, Any]) -> list[Rule]:
    """Per category: F1 against its tier's gate, and recall against the tier's floor where one is set."""
    rules = []
    for name, entry in metrics["per_category"].items():
        tier = policy.tiers[str(policy.categories[name])]
        checks = [("f1", entry["f1"], tier.f1_gate)]
        if tier.recall_floor is not None:
            checks.append(("recall", entry["recall"], tier.recall_floor))
        for metric, value, floor in checks:
            rule = Rule(
                rule=f"{name}.{metric} >= {floor}",
                category=name,
                tier=policy.categories[name],
                metric=metric,
                value=float(value),  # unrounded: the status is decided on the number itself, reports round
                floor=floor,
                support=entry["support"],
                status="pass",
            )
            rules.append(rule.model_copy(update={"status": rule_status(rule, policy)}))
    return rules


def regression_rules(policy: GatePolicy, regression: dict[str, Any]) -> list[Rule]:
    """One rule per regression suite: hard vectors passed against the suite's requirement."""
    rules = []
    for suite, result in regression["suites"].items():
        rule = Rule(
            rule=f"regression.{suite}",
            metric="vectors",
            value=result["hard_passed"],
            floor=policy.regression[suite],
            status="pass",
            failed_vectors=[vector["id"] for vector in result["vectors"] if vector["status"] == "fail"],
        )
        rules.append(rule.model_copy(update={"status": rule_status(rule, policy)}))
    return rules


def decide(
    policy: GatePolicy,
    metrics: dict[str, Any],
    regression: dict[str, Any],
    judged: Judged,
    smoke_test: bool = False,
) -> GateRecord:
    """Judge the tier gates, recall floors and regression suites; `not_measurable` blocks only when configured to."""
    rules = category_rules(policy, metrics) + regression_rules(policy, regression)
    rules += comparison_rules(policy, metrics.get("comparison"))
    failures = [rule for rule in rules if rule.status in policy.blocking()]
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
    return GateRecord(
        passed=passed,
        decision="promote" if passed else "reject",
        failures=failures,
        warnings=warnings,
        rules=rules,
        summary=summary,
        policy=policy,
        policy_sha256=policy.sha256(),
        judged=judged,
        smoke_test=smoke_test,
    )


# ---- comparison with the previously promoted model ----------------------------------------------

COMPARISON_METRIC = "f1_delta"


def comparison_floor(taxonomy: Taxonomy) -> ComparisonFloor | None:
    """The taxonomy's comparison policy as the gate records it; none when the taxonomy sets none."""
    if taxonomy.comparison is None:
        return None
    return ComparisonFloor(max_f1_drop=taxonomy.comparison.max_f1_drop, categories=taxonomy.compared_categories())


def comparison_rule_name(category: str, max_f1_drop: float) -> str:
    return f"comparison.{category}.f1_delta >= -{max_f1_drop}"


def comparison_floors(policy: GatePolicy) -> dict[str, float | int]:
    if policy.comparison is None:
        return {}
    drop = policy.comparison.max_f1_drop
    return {comparison_rule_name(name, drop): -drop for name in policy.comparison.categories}


def comparison_status(rule: Rule) -> RuleStatus:
    """Fail only when the F1 fell by more than the tolerance AND the paired interval of the change lies
    below zero: a drop inside bootstrap noise is not a regression. No previous model: nothing to compare."""
    if rule.value is None or rule.value >= rule.floor:
        return "pass"
    return "fail" if rule.interval is not None and rule.interval[1] < 0 else "pass"


def comparison_rules(policy: GatePolicy, comparison: dict[str, Any] | None) -> list[Rule]:
    """Per listed category: its F1 change against the previous model (metrics.json `comparison`)."""
    if policy.comparison is None:
        return []
    compared = comparison["categories"] if comparison and comparison.get("status") == "compared" else {}
    rules = []
    for name in policy.comparison.categories:
        entry = compared.get(name)
        rule = Rule(
            rule=comparison_rule_name(name, policy.comparison.max_f1_drop),
            metric=COMPARISON_METRIC,
            category=name,
            tier=policy.categories[name],
            value=None if entry is None else float(entry["delta"]),
            floor=-policy.comparison.max_f1_drop,
            support=None if entry is None else entry["support"],
            interval=None if entry is None else [float(bound) for bound in entry["interval"]],
            status="pass",
        )
        rules.append(rule.model_copy(update={"status": comparison_status(rule)}))
    return rules


# ---- trusting a record ---------------------------------------------------------------------------


def verify_decision(gate: GateRecord, configured: GatePolicy | None = None) -> None:
    """Recompute the decision from the recorded numbers; refuse any field that disagrees with it.

    With `configured`, the record's policy must also be the policy configured now: a gate judged
    under other floors (or other suites) is re-evaluated, never reused.
    """
    if gate.policy_sha256 != gate.policy.sha256():
        raise PromotionRefused("the gate record's policy_sha256 does not match its policy; the record was edited")
    if configured is not None and gate.policy != configured:
        changed = ", ".join(gate.policy.differences(configured)[:5])
        raise PromotionRefused(f"the gate was judged under another policy than the one configured now ({changed}); re-evaluate")
    floors = gate.policy.floors()
    recorded = {rule.rule: rule for rule in gate.rules}
    missing, extra = sorted(set(floors) - set(recorded)), sorted(set(recorded) - set(floors))
    if missing or extra or len(recorded) != len(gate.rules):
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra else "duplicate rules"
        raise PromotionRefused(f"the gate record's rules are not the policy's ({detail}); the record was edited")
    for rule in gate.rules:
        if rule.floor != floors[rule.rule]:
            raise PromotionRefused(f"rule {rule.rule} records floor {rule.floor}, the policy says {floors[rule.rule]}")
        if rule.status != rule_status(rule, gate.policy):
            raise PromotionRefused(
                f"rule {rule.rule} is recorded as {rule.status} but its numbers say {rule_status(rule, gate.policy)}"
            )
    failures = [rule for rule in gate.rules if rule.status in gate.policy.blocking()]
    warnings = [rule for rule in gate.rules if rule.status == "not_measurable" and rule not in failures]
    passed = not failures
    if (
        gate.failures != failures
        or gate.warnings != warnings
        or gate.passed != passed
        or gate.decision != ("promote" if passed else "reject")
    ):
        raise PromotionRefused(
            f"the gate record says passed={gate.passed}, decision={gate.decision!r}, but its rules say "
            f"{'promote' if passed else 'reject'} ({len(failures)} failing); the record was edited"
        )
    failing_categories = sorted({rule.category for rule in failures if rule.category is not None})
    if gate.summary.categories_failing != failing_categories:
        raise PromotionRefused("the gate record's summary does not match its rules; the record was edited")
    verify_signature(gate)


def signing_key() -> bytes | None:
    key = os.environ.get(SIGNING_KEY_ENV, "")
    return key.encode("utf-8") if key else None


def hmac_hex(key: bytes, document: Any) -> str:
    """HMAC-SHA256 of a JSON document in canonical form."""
    return hmac.new(key, canonical_json(document).encode("utf-8"), hashlib.sha256).hexdigest()


def sign(gate: GateRecord) -> GateRecord:
    """The record with its HMAC signature when a signing key is configured; unchanged otherwise."""
    key = signing_key()
    return gate if key is None else gate.model_copy(update={"signature": hmac_hex(key, gate.unsigned_json())})


def check_signature(unsigned: Any, signature: str | None, what: str) -> None:
    """With a key configured, `signature` must be this key's HMAC of `unsigned`; without one nothing is checked.

    One check for every signed document (the gate record, the repository manifest).
    """
    key = signing_key()
    if key is None:
        return
    if signature is None:
        raise PromotionRefused(f"{what} is not signed, and {SIGNING_KEY_ENV} is set; refusing")
    if not hmac.compare_digest(signature, hmac_hex(key, unsigned)):
        raise PromotionRefused(f"{what}: signature does not match: it was edited or signed with another key")


def verify_signature(gate: GateRecord) -> None:
    check_signature(gate.unsigned_json(), gate.signature, "the gate record")


def require_trusted(gate: GateRecord, consequence: str, configured: GatePolicy | None = None) -> None:
    """The one check before anything is packaged, published, promoted, rolled back or served."""
    verify_decision(gate, configured)
    gate.require_passed(consequence)


def parse_gate(data: Any, where: str) -> GateRecord:
    """A gate record from parsed JSON; anything malformed is a refusal naming `where`."""
    try:
        return GateRecord.model_validate(data)
    except ValidationError as error:
        raise PromotionRefused(f"{where} is not a valid gate record: {format_validation_error(error)}") from None


def load_gate(evaluation_dir: Path) -> GateRecord:
    """Read `<evaluation_dir>/gate.json`; a missing or malformed record is a refusal, never a default."""
    path = Path(evaluation_dir) / GATE_FILE
    if not path.is_file():
        raise PromotionRefused(f"{path} not found: no gate record, nothing can be promoted")
    try:
        data = read_json(path)
    except ValueError as error:  # JSON syntax errors, bad encodings
        raise PromotionRefused(f"{path} is not a valid gate record: {error}") from None
    return parse_gate(data, str(path))


def write_gate(evaluation_dir: Path, gate: GateRecord) -> GateRecord:
    """Write the record, signed when `TIERGATE_GATE_KEY` is set; return what was written."""
    signed = sign(gate)
    write_json(Path(evaluation_dir) / GATE_FILE, signed.as_json())
    return signed
