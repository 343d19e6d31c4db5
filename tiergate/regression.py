"""Regression vectors: curated, versioned rules the candidate model must satisfy.

The suites' model and loader live in the core because two steps read them: evaluate runs
them (`tiergate.components.evaluate.regression`) and merge keeps their texts out of training.

Each vector names its rule (flag X / not flag Y / flag both), per context. A suite has a
policy: `all` its required vectors, or `{min_pass: N}` for co-detection: any N of all its vectors (such a
suite may mark no vector a known gap, which would lower the bar). In an `all` suite, vectors marked
`expected: known_gap` are tracked gaps (xfail): they never block promotion, and one that
passes is reported as an xpass. A suite's `promote_xpass: [ids]` makes such gaps required
(they stay marked `known_gap` in the file, so the history reads there): promotion is an explicit,
reviewed edit that changes the gate policy, never a side effect of one lucky evaluation.

No vector may be a near-copy of another (each would measure the same thing twice) unless it
names the one it disguises (`variant_of`), nor of a generator seed: tests check both with
the merge step's leakage matcher (`tiergate.components.merge.leakage`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from tiergate.errors import ConfigError
from tiergate.formatting import model_readings
from tiergate.records import Context, normalise_text
from tiergate.strict import StrictModel, format_validation_error
from tiergate.taxonomy import Taxonomy
from tiergate.yaml_io import load_yaml


class Check(StrictModel):
    context: str
    flag: list[str] = Field(default_factory=list)
    not_flag: list[str] = Field(default_factory=list)


class Vector(StrictModel):
    id: str
    text: str = Field(min_length=1)
    context: str | None = None
    flag: list[str] = Field(default_factory=list)
    not_flag: list[str] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    expected: Literal["pass", "known_gap"] = "pass"
    variant_of: str | None = None  # a deliberate near-copy (a disguise, an injected tag) of this vector id

    @model_validator(mode="after")
    def _one_form(self) -> Vector:
        short = self.context is not None or self.flag or self.not_flag
        if short and self.checks:
            raise ValueError("use either context/flag/not_flag or checks, not both")
        if not self.checks and (self.context is None or not (self.flag or self.not_flag)):
            raise ValueError("a vector needs a context and a rule (flag and/or not_flag), or checks")
        return self

    def all_checks(self) -> list[Check]:
        return self.checks or [Check(context=self.context or "", flag=self.flag, not_flag=self.not_flag)]


class MinPass(StrictModel):
    min_pass: int = Field(ge=1)


class Suite(StrictModel):
    suite: str
    description: str
    policy: Literal["all"] | MinPass
    vectors: list[Vector] = Field(min_length=1)
    promote_xpass: list[str] = Field(default_factory=list)  # known gaps a model passed, now required
    # Share of an `all` suite's required vectors that must pass: the profile's
    # `evaluate.regression_min_pass_rate`, set by `load_suites` (1.0 everywhere but a smoke profile).
    min_pass_rate: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _promote(cls, data: Any) -> Any:
        """A promoted known gap is loaded as required (`expected: pass`): every reader of `expected` sees the rule
        the gate applies, while the file keeps `known_gap` as the vector's history."""
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("promote_xpass"), list)
            or not isinstance(data.get("vectors"), list)
        ):
            return data
        promoted = set(data["promote_xpass"])
        gaps = {v.get("id") for v in data["vectors"] if isinstance(v, dict) and v.get("expected") == "known_gap"}
        if promoted - gaps:
            raise ValueError(f"promote_xpass names {sorted(promoted - gaps, key=str)}: not known_gap vectors of this suite")
        vectors = [{**v, "expected": "pass"} if isinstance(v, dict) and v.get("id") in promoted else v for v in data["vectors"]]
        return {**data, "vectors": vectors}

    @property
    def hard_vectors(self) -> list[Vector]:
        """The vectors that decide the suite (known gaps are tracked unless promoted)."""
        return [vector for vector in self.vectors if vector.expected == "pass"]

    @property
    def required(self) -> int:
        """How many hard vectors must pass: all of them (times the profile's `min_pass_rate`, rounded up),
        or any `min_pass` of them (a min_pass suite has no known gaps: `load_suites` refuses them, so
        that bar is never lowered below the written one)."""
        if isinstance(self.policy, MinPass):
            return self.policy.min_pass
        return math.ceil(self.min_pass_rate * len(self.hard_vectors) - 1e-9)


def load_suites(directory: Path, taxonomy: Taxonomy, min_pass_rate: float = 1.0) -> list[Suite]:
    """Every `*.yaml` suite in `directory`, validated against the taxonomy (labels, contexts, ids); an `all`
    suite requires `min_pass_rate` of its required vectors (the profile's, never the file's)."""
    directory = Path(directory)
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise ConfigError(f"no regression suites (*.yaml) in {directory}")
    suites: list[Suite] = []
    seen: set[str] = set()
    for path in paths:
        data = load_yaml(path)
        if isinstance(data, dict) and "min_pass_rate" in data:
            raise ConfigError(f"{path}: min_pass_rate is the profile's (evaluate.regression_min_pass_rate), not a suite's")
        try:
            suite = Suite.model_validate({**data, "min_pass_rate": min_pass_rate} if isinstance(data, dict) else data)
        except ValidationError as error:
            raise ConfigError(f"{path}: {format_validation_error(error)}") from None
        if suite.suite in {existing.suite for existing in suites}:
            raise ConfigError(f"{path}: duplicate suite name {suite.suite!r}; each suite's requirement is one gate rule")
        for vector in suite.vectors:
            if vector.id in seen:
                raise ConfigError(f"{path}: duplicate vector id {vector.id!r}")
            seen.add(vector.id)
            for check in vector.all_checks():
                Context.parse(check.context, taxonomy.contexts.audiences, taxonomy.contexts.surfaces)
                unknown = sorted(set(check.flag + check.not_flag) - set(taxonomy.labels))
                if unknown:
                    raise ConfigError(f"{path}: vector {vector.id}: unknown categories {unknown}")
        if isinstance(suite.policy, MinPass) and suite.policy.min_pass > len(suite.vectors):
            raise ConfigError(f"{path}: min_pass {suite.policy.min_pass} exceeds the {len(suite.vectors)} vectors")
        if isinstance(suite.policy, MinPass) and any(vector.expected == "known_gap" for vector in suite.vectors):
            gaps = [vector.id for vector in suite.vectors if vector.expected == "known_gap"]
            raise ConfigError(
                f"{path}: min_pass suite marks {gaps} known_gap; it passes on any {suite.policy.min_pass} of its "
                "vectors, so a gap would lower that bar: remove the marks"
            )
        suites.append(suite)
    for suite in suites:
        for vector in suite.vectors:
            if vector.variant_of is not None and (vector.variant_of not in seen or vector.variant_of == vector.id):
                raise ConfigError(
                    f"suite {suite.suite}: vector {vector.id}: variant_of {vector.variant_of!r} is not another vector"
                )
    return suites


def reading_keys(text: str) -> set[str]:
    """What the model reads of `text` (every reading, tiergate.formatting), case-folded: two texts the model
    cannot tell apart share a key, so a disguised copy of a vector is as much a leak as the vector itself."""
    return {normalise_text(reading) for reading in model_readings(text)}  # every reading, not only the first


def vector_texts(suites: Sequence[Suite]) -> set[str]:
    """Reading keys of every vector: merge keeps texts with any of them out of training (no eval leakage)."""
    return {key for suite in suites for vector in suite.vectors for key in reading_keys(vector.text)}
