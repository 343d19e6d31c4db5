"""The regression suites as an exam: big enough (the experiment log's counts), no question asked twice,
none copied from the generator's own seeds, and promotion of known gaps that a model passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiergate.components.evaluate.regression import run_suites
from tiergate.components.generate.offline import load_vocabulary
from tiergate.components.merge.leakage import generator_texts, near_duplicate_vectors, vectors_copying
from tiergate.errors import ConfigError
from tiergate.paths import project_path
from tiergate.profiles import Profile
from tiergate.records import Context
from tiergate.regression import Suite, load_suites
from tiergate.taxonomy import Taxonomy

# The log's regression gate for the next model: 47 positive and 58 hard-negative vectors, 5 multi-label
# scenarios (3 must pass), context sensitivity checks (counted here: the v15 audit had 3).
LOG_COUNTS = {"positives": 47, "hard_negatives": 58, "multilabel": 5, "context": 3}


@pytest.fixture(scope="module")
def suites(taxonomy: Taxonomy) -> dict[str, Suite]:
    return {suite.suite: suite for suite in load_suites(project_path("config/regression"), taxonomy)}


@pytest.mark.parametrize(("name", "minimum"), sorted(LOG_COUNTS.items()))
def test_each_suite_has_at_least_the_logs_count(suites: dict[str, Suite], name: str, minimum: int) -> None:
    assert len(suites[name].vectors) >= minimum


def test_every_category_has_a_positive_and_a_hard_negative(suites: dict[str, Suite], taxonomy: Taxonomy) -> None:
    assert {name for vector in suites["positives"].vectors for name in vector.flag} == set(taxonomy.labels)
    assert {name for vector in suites["hard_negatives"].vectors for name in vector.not_flag} == set(taxonomy.labels)


def test_required_vectors_still_cover_most_of_each_suite(suites: dict[str, Suite]) -> None:
    """Tracked gaps are the exception: a suite that is mostly known gaps gates nothing."""
    for name in ("positives", "hard_negatives", "context"):
        assert 3 * len(suites[name].hard_vectors) >= 2 * len(suites[name].vectors), name


def test_no_two_vectors_are_near_duplicates(suites: dict[str, Suite], local_profile: Profile) -> None:
    """A near-copy asks the same question twice, unless it says which vector it disguises (`variant_of`)."""
    variants = {vector.id: vector.variant_of for suite in suites.values() for vector in suite.vectors if vector.variant_of}

    def origin(vector_id: str) -> str:
        return variants.get(vector_id, vector_id)

    pairs = near_duplicate_vectors(list(suites.values()), local_profile.merge.leakage)
    undeclared = sorted((a, m.vector_id, m.similarity) for a, m in pairs if origin(a) != origin(m.vector_id))
    assert undeclared == []
    assert any(a == "adv-threat-spaced" and m.vector_id == "pos-threats-1" for a, m in pairs)  # the matcher sees disguises


def test_no_vector_copies_a_generator_seed_or_template(
    suites: dict[str, Suite], taxonomy: Taxonomy, local_profile: Profile
) -> None:
    """A vector the generator's own data repeats measures memorisation, and merge would quarantine that data."""
    texts = generator_texts(taxonomy, load_vocabulary())
    assert len(texts) > 500  # seeds with their slots filled, overlap seeds and innocuous templates
    copies = sorted(
        {
            (match.vector_id, text, match.similarity)
            for text, match in vectors_copying(texts, list(suites.values()), local_profile.merge.leakage)
        }
    )
    assert copies == []


def test_the_seed_check_catches_a_vector_written_from_a_seed(taxonomy: Taxonomy, local_profile: Profile, tmp_path: Path) -> None:
    seed = taxonomy.category("threats").seeds.positive[1]  # no slots
    (tmp_path / "s.yaml").write_text(
        "suite: s\ndescription: d\npolicy: all\nvectors:\n"
        f'  - {{id: copied, text: "{seed.upper()}!!", context: general/message, flag: [threats]}}\n'
        '  - {id: fresh, text: "the quarterly report is due on friday", context: general/message, not_flag: [threats]}\n'
    )
    found = vectors_copying(
        generator_texts(taxonomy, load_vocabulary()), load_suites(tmp_path, taxonomy), local_profile.merge.leakage
    )
    assert {match.vector_id for _, match in found} == {"copied"}


# ---- known gaps, xpass and promotion -----------------------------------------------------------------


def _suite_file(tmp_path: Path, promote: str = "[]") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "adv.yaml").write_text(
        "suite: adversarial\ndescription: d\npolicy: all\n"
        f"promote_xpass: {promote}\n"
        "vectors:\n"
        "  - {id: req, text: required text, context: general/message, flag: [threats]}\n"
        "  - {id: gap-a, text: first gap text, context: general/message, flag: [threats], expected: known_gap}\n"
        "  - {id: gap-b, text: second gap text, context: general/message, flag: [threats], expected: known_gap}\n"
    )
    return tmp_path


def _flagging(taxonomy: Taxonomy, texts_flagged: set[str]):  # type: ignore[no-untyped-def]
    column = taxonomy.labels.index("threats")

    def classify(texts: list[str], contexts: list[Context]) -> tuple[np.ndarray, np.ndarray]:
        flags = np.zeros((len(texts), len(taxonomy.labels)), bool)
        for row, text in enumerate(texts):
            flags[row, column] = text in texts_flagged
        return flags.astype(np.float32), flags

    return classify


def test_a_known_gap_the_model_passes_is_an_xpass_reported_and_promotable(taxonomy: Taxonomy, tmp_path: Path) -> None:
    suites = load_suites(_suite_file(tmp_path), taxonomy)
    result = run_suites(suites, taxonomy, _flagging(taxonomy, {"required text", "first gap text"}))
    entry = result["suites"]["adversarial"]
    assert result["passed"] and entry["required"] == 1
    assert entry["xpass"] == ["gap-a"] and entry["xfail"] == 1
    assert result["promotable"] == {"adversarial": ["gap-a"]}
    assert result["summary"]["adversarial"] == "1/1 (need 1), xpass gap-a"


def test_a_promoted_gap_is_required_and_its_miss_fails_the_gate(taxonomy: Taxonomy, tmp_path: Path) -> None:
    from tiergate.gate import regression_rules

    suites = load_suites(_suite_file(tmp_path, "[gap-a]"), taxonomy)
    assert [vector.id for vector in suites[0].hard_vectors] == ["req", "gap-a"] and suites[0].required == 2
    missed = run_suites(suites, taxonomy, _flagging(taxonomy, {"required text", "second gap text"}))
    entry = missed["suites"]["adversarial"]
    assert not missed["passed"] and entry["promoted"] == ["gap-a"]
    assert {v["id"]: v["status"] for v in entry["vectors"]} == {"req": "pass", "gap-a": "fail", "gap-b": "xpass"}
    policy = _policy(taxonomy, suites)
    (rule,) = regression_rules(policy, missed)
    assert rule.status == "fail" and rule.failed_vectors == ["gap-a"] and (rule.value, rule.floor) == (1, 2)
    kept = run_suites(suites, taxonomy, _flagging(taxonomy, {"required text", "first gap text"}))
    assert regression_rules(policy, kept)[0].status == "pass"


def test_promotion_changes_the_gate_policy(taxonomy: Taxonomy, tmp_path: Path) -> None:
    before = _policy(taxonomy, load_suites(_suite_file(tmp_path / "a"), taxonomy))
    after = _policy(taxonomy, load_suites(_suite_file(tmp_path / "b", "[gap-a, gap-b]"), taxonomy))
    assert before.regression == {"adversarial": 1} and after.regression == {"adversarial": 3}
    assert before.sha256() != after.sha256()  # a gate judged before the promotion is re-evaluated, never reused


def test_promoting_a_vector_that_is_not_a_known_gap_is_refused(taxonomy: Taxonomy, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"promote_xpass names \['req'\]"):
        load_suites(_suite_file(tmp_path, "[req]"), taxonomy)
    with pytest.raises(ConfigError, match=r"promote_xpass names \['gone'\]"):
        load_suites(_suite_file(tmp_path, "[gone]"), taxonomy)


def test_a_min_pass_suite_may_mark_no_known_gap(taxonomy: Taxonomy, tmp_path: Path) -> None:
    """Any N of M: a known gap there would quietly turn "3 of 5" into "2 of 2" (what happened once)."""
    (tmp_path / "m.yaml").write_text(
        "suite: multi\ndescription: d\npolicy: {min_pass: 2}\nvectors:\n"
        "  - {id: m1, text: first multi text, context: general/message, flag: [threats]}\n"
        "  - {id: m2, text: second multi text, context: general/message, flag: [threats], expected: known_gap}\n"
        "  - {id: m3, text: third multi text, context: general/message, flag: [threats]}\n"
    )
    with pytest.raises(ConfigError, match=r"min_pass suite marks \['m2'\] known_gap"):
        load_suites(tmp_path, taxonomy)


def test_the_profiles_min_pass_rate_lowers_only_all_suites(taxonomy: Taxonomy, tmp_path: Path) -> None:
    from tiergate.gate import configured_policy
    from tiergate.profiles import load_profile

    directory = project_path("config/regression")
    strict = {suite.suite: suite for suite in load_suites(directory, taxonomy)}
    smoke = {suite.suite: suite for suite in load_suites(directory, taxonomy, min_pass_rate=0.85)}
    hard = len(strict["positives"].hard_vectors)
    assert strict["positives"].required == hard
    assert smoke["positives"].required == -(-85 * hard // 100) < hard  # rounded up, never down
    assert smoke["multilabel"].required == strict["multilabel"].required == 3
    local, public = load_profile("local"), load_profile("public")
    assert local.evaluate.regression_min_pass_rate < 1.0 == public.evaluate.regression_min_pass_rate
    assert configured_policy(taxonomy, local).sha256() != configured_policy(taxonomy, public).sha256()
    assert configured_policy(taxonomy, public).regression["positives"] == hard
    (tmp_path / "s.yaml").write_text(
        "suite: s\ndescription: d\npolicy: all\nmin_pass_rate: 0.1\nvectors:\n"
        "  - {id: s1, text: some text, context: general/message, flag: [threats]}\n"
    )
    with pytest.raises(ConfigError, match="min_pass_rate is the profile's"):
        load_suites(tmp_path, taxonomy)


def test_variant_of_must_name_another_vector(taxonomy: Taxonomy, tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(
        "suite: v\ndescription: d\npolicy: all\nvectors:\n"
        "  - {id: v1, text: some text, context: general/message, flag: [threats], variant_of: nowhere}\n"
    )
    with pytest.raises(ConfigError, match="variant_of 'nowhere' is not another vector"):
        load_suites(tmp_path, taxonomy)


def test_the_live_adversarial_suite_requires_promoted_subtle_vectors(suites: dict[str, Suite]) -> None:
    adversarial = suites["adversarial"]
    assert adversarial.promote_xpass  # the adversarial rule reads subtle vectors that can fail, not only evasion
    required = {vector.id for vector in adversarial.hard_vectors}
    assert set(adversarial.promote_xpass) <= required
    assert any(vector.expected == "known_gap" for vector in adversarial.vectors)  # the rest stays tracked


def _policy(taxonomy: Taxonomy, suites: list[Suite]):  # type: ignore[no-untyped-def]
    from tiergate.gate import gate_policy
    from tiergate.profiles import load_profile

    profile = load_profile("local")
    return gate_policy(taxonomy, profile.evaluate, profile.merge.min_test_support, suites)
