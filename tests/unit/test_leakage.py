"""The eval-leakage guard: a training record equal to, or a near-copy of, a regression vector never trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.components.merge.leakage import exclude_vectors, expand_template, jaccard, shingles
from tiergate.profiles import LeakageSettings, Profile
from tiergate.records import Context, Kind, Record, Source, make_record
from tiergate.regression import Suite, load_suites
from tiergate.taxonomy import Taxonomy

VECTOR = "i followed your car home last night, next time you won't see me coming"


@pytest.fixture
def suites(taxonomy: Taxonomy, tmp_path: Path) -> list[Suite]:
    (tmp_path / "s.yaml").write_text(
        "suite: positives\ndescription: d\npolicy: all\nvectors:\n"
        f'  - {{id: pos-threats-1, text: "{VECTOR}", context: general/message, flag: [threats]}}\n'
        '  - {id: pos-spam-1, text: "earn 500 a day from your phone, join now", context: general/bio, flag: [spam]}\n'
    )
    return load_suites(tmp_path, taxonomy)


@pytest.fixture
def settings(local_profile: Profile) -> LeakageSettings:
    return local_profile.merge.leakage


def _record(text: str, taxonomy: Taxonomy) -> Record:
    source = Source(generator="test", model="t", prompt_id="p", category="threats", kind=Kind.POSITIVE)
    return make_record(
        text, Context.parse("general/message", taxonomy.contexts.audiences, taxonomy.contexts.surfaces), ["threats"], source
    )


def _reasons(texts: list[str], suites: list[Suite], settings: LeakageSettings, taxonomy: Taxonomy) -> dict[str, str | None]:
    kept, leaked = exclude_vectors([_record(text, taxonomy) for text in texts], suites, settings)
    reasons: dict[str, str | None] = {record.text: None for record in kept}
    reasons.update({item.record.text: item.reason for item in leaked})
    return reasons


def test_an_exact_copy_is_quarantined_by_the_exact_check(
    suites: list[Suite], settings: LeakageSettings, taxonomy: Taxonomy
) -> None:
    reasons = _reasons([VECTOR, VECTOR.upper()], suites, settings, taxonomy)
    assert reasons[VECTOR] == "eval leakage: text is regression vector positives/pos-threats-1"
    assert reasons[VECTOR.upper()] == reasons[VECTOR]  # case-folded: the model cannot tell them apart


@pytest.mark.parametrize(
    "copy",
    [
        "i followed your van home last night, next time you won't see me coming",  # one word changed
        "I FOLLOWED your car home last night... next time you won't see me coming!!",  # case and punctuation
        "i followed your car home last night; next time, you will not see me coming",  # punctuation and a contraction
        "hey, i followed your car home last night, next time you won't see me coming lol",  # an opener and a tail
        "1 f0ll0w3d y0ur c4r h0m3 l4st n1ght, n3xt t1m3 y0u w0n't s33 m3 c0m1ng",  # a disguise the normalisation undoes
    ],
)
def test_a_near_copy_is_quarantined_naming_the_vector_and_similarity(
    copy: str, suites: list[Suite], settings: LeakageSettings, taxonomy: Taxonomy
) -> None:
    reason = _reasons([copy], suites, settings, taxonomy)[copy]
    assert reason is not None
    prefix = "eval leakage: near-duplicate of regression vector positives/pos-threats-1 (similarity "
    if not reason.startswith("eval leakage: text is regression vector"):  # a disguise may fold to the exact text
        assert reason.startswith(prefix) and reason.endswith(")")
        assert settings.threshold <= float(reason[len(prefix) : -1]) <= 1.0  # punctuation alone folds away: 1.00


@pytest.mark.parametrize(
    "unrelated",
    [
        "are we still on for coffee on friday?",
        "i followed the recipe last night and it came out great",  # shares words, not the text
        "earn a degree from home in your own time",
    ],
)
def test_an_unrelated_text_is_kept(unrelated: str, suites: list[Suite], settings: LeakageSettings, taxonomy: Taxonomy) -> None:
    assert _reasons([unrelated], suites, settings, taxonomy)[unrelated] is None


def test_kept_records_keep_their_order_and_the_threshold_decides(
    suites: list[Suite], settings: LeakageSettings, taxonomy: Taxonomy
) -> None:
    texts = ["first benign text here", "i followed your van home last night, next time you won't see me coming", "last one"]
    kept, leaked = exclude_vectors([_record(text, taxonomy) for text in texts], suites, settings)
    assert [record.text for record in kept] == ["first benign text here", "last one"] and len(leaked) == 1
    strict = settings.model_copy(update={"threshold": 0.99})
    kept, leaked = exclude_vectors([_record(text, taxonomy) for text in texts], suites, strict)
    assert len(kept) == 3 and leaked == []  # a near-copy under a stricter threshold trains


def test_similarity_is_the_exact_jaccard_of_shingles() -> None:
    a, b = shingles("abcdef", 3), shingles("abcdxy", 3)
    assert a == {b"abc", b"bcd", b"cde", b"def"} and jaccard(a, b) == 2 / 6
    assert shingles("ab", 3) == {b"ab"}  # shorter than a shingle: the whole text


def test_templates_expand_every_slot_value() -> None:
    assert expand_template("meet {name} at {place}", {"name": ["a", "b"], "place": ["x", "y"]}) == [
        "meet a at x",
        "meet a at y",
        "meet b at x",
        "meet b at y",
    ]
