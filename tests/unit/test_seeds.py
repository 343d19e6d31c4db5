"""The seeds and counts the experiment log settled on, the boundary seeds, and the anti_trans -> hate_speech rule.

Seeds live in config/taxonomy.yaml (one source of truth for the offline and LLM generators); the
production counts resolve through `generation_counts: production` (taxonomy `generation.counts`
plus per-category `generation` overrides).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tiergate.components.generate.llm import build_prompt
from tiergate.components.generate.offline import OfflineGenerator, load_vocabulary
from tiergate.components.generate.plan import GenerationRequest, ItemSpec
from tiergate.components.generate.secondary import with_secondary_labels
from tiergate.components.generate.step import generate_category
from tiergate.components.merge.leakage import expand_template, vectors_copying
from tiergate.errors import ConfigError
from tiergate.paths import project_path
from tiergate.profiles import Profile, load_profile
from tiergate.records import Context, Kind, Source, make_record, read_jsonl
from tiergate.regression import load_suites
from tiergate.taxonomy import Taxonomy, parse_taxonomy

# (category, count field, value, where the log settled it)
PRODUCTION_COUNTS = [
    ("threats", "positives", 550, "Exp 34: flat caps, T5 restored to the full 550"),
    ("adult_content", "positives", 550, "Exp 34"),
    ("threats", "hard_negatives", 600, "Exp 29/30: hard_negatives_per_category 600"),
    ("ncii", "hard_negatives", 600, "Exp 30: remains 600 in config"),
    ("predatory_behavior", "hard_negatives", 400, "Exp 30/34: restored to 400"),
    ("harassment", "hard_negatives", 600, "Exp 34: per-category override"),
    ("extreme_gore", "hard_negatives", 700, "Exp 34: per-category override"),
]

# (category, seeds counted, number, where the log settled it)
SEED_COUNTS = [
    ("threats", "hard_negative", 8, "Exp 25: 4 generic -> 8 targeted"),
    ("predatory_behavior", "hard_negative", 8, "Exp 25, restored by Exp 30 (Exp 29's 5 reverted)"),
    ("harassment", "hard_negative", 14, "Exp 25 (9) + Exp 26 (5 single-message)"),
    ("extreme_gore", "hard_negative+boundary", 22, "Exp 31: 8 + 5 + 5 + 4"),
    ("anti_trans", "hard_negative", 12, "Exp 31"),
]

# Exp 35's pattern families, one positive seed each at least.
EXP35_POSITIVES = {"trafficking": 6, "financial_coercion": 5, "consent_violation": 4, "threats": 4, "csam": 2, "sextortion": 2}

LOG_SECONDARY_PHRASES = ["never be a real", "mutilate yourself", "mentally ill", "you'll never be"]  # Exp 31


def _seed_count(taxonomy: Taxonomy, name: str, what: str) -> int:
    seeds = taxonomy.category(name).seeds
    count = len(seeds.hard_negative)
    if what == "hard_negative+boundary":
        count += sum(len(texts) for texts in seeds.boundary.values())
    return count


@pytest.mark.parametrize(("name", "field", "value", "where"), PRODUCTION_COUNTS)
def test_production_counts_are_the_logs(taxonomy: Taxonomy, name: str, field: str, value: int, where: str) -> None:
    production = load_profile("production")
    assert getattr(taxonomy.counts_for(name, production.generation_counts), field) == value, where


@pytest.mark.parametrize(("name", "what", "value", "where"), SEED_COUNTS)
def test_seed_counts_are_the_logs(taxonomy: Taxonomy, name: str, what: str, value: int, where: str) -> None:
    assert _seed_count(taxonomy, name, what) == value, where


def test_exp35_pattern_seeds_are_present(taxonomy: Taxonomy) -> None:
    short = {name: len(taxonomy.category(name).seeds.positive) for name, need in EXP35_POSITIVES.items()}
    assert all(short[name] >= need for name, need in EXP35_POSITIVES.items()), short


def test_local_volume_is_unchanged(taxonomy: Taxonomy, local_profile: Profile) -> None:
    """More seeds are more templates, never more examples: `make run` keeps its size."""
    for name in taxonomy.labels:
        counts = taxonomy.counts_for(name, local_profile.generation_counts)
        assert (counts.positives, counts.hard_negatives, counts.innocuous) == (64, 32, 16), name


def test_every_category_has_neutral_hard_negatives(taxonomy: Taxonomy) -> None:
    """A generated hard negative is labelled safe for EVERY category, so its seed may carry no category's signals
    (a seed that belongs to a neighbour goes under seeds.boundary)."""
    carrying = []
    for category in taxonomy.categories:
        assert len(category.seeds.hard_negative) >= 3, category.name
        for seed in category.seeds.hard_negative:
            carrying += [(category.name, seed, other.name) for other in taxonomy.categories if other.matching_signals(seed)]
    assert carrying == []


def test_exp29_poisoned_seeds_are_not_ported(taxonomy: Taxonomy) -> None:
    seeds = " ".join(taxonomy.category("predatory_behavior").seeds.hard_negative).lower()
    assert not any(word in seeds for word in ("tribute", "findom", "predator", "groomed", "receipts", "safeword"))


def test_no_seed_near_copies_a_regression_vector(taxonomy: Taxonomy, local_profile: Profile) -> None:
    """Every seed (positive, hard negative, overlap, boundary), slots filled every way, against every vector."""
    slots = load_vocabulary()["slots"]
    templates = []
    for category in taxonomy.categories:
        templates += category.seeds.positive + category.seeds.hard_negative
        templates += [text for texts in category.overlap_seeds.values() for text in texts]
        templates += [text for texts in category.seeds.boundary.values() for text in texts]
    texts = {text for template in templates for text in expand_template(template, slots)}
    suites = load_suites(project_path(local_profile.evaluate.regression_dir), taxonomy)
    assert sum(len(suite.vectors) for suite in suites) > 100
    assert sorted({(match.vector_id, text) for text, match in vectors_copying(texts, suites, local_profile.merge.leakage)}) == []


# ---- boundary seeds -------------------------------------------------------------------------------------------


def test_boundary_seeds_are_generated_as_the_neighbours_positives(taxonomy: Taxonomy) -> None:
    snuff_boundary = taxonomy.category("extreme_gore").seeds.boundary["snuff"]
    assert len(snuff_boundary) == 5  # Exp 27: snuff fantasy without gore imagery
    assert taxonomy.positive_seeds("snuff")[-len(snuff_boundary) :] == snuff_boundary
    assert not any(taxonomy.category("extreme_gore").matching_signals(text) for text in snuff_boundary)

    generator = OfflineGenerator(taxonomy, seed=7)
    items = [ItemSpec("snuff", Kind.POSITIVE, index, Context(audience="adult", surface="message")) for index in range(200)]
    written = {generator._core(item, generator._rng(item)) for item in items}  # the template each item drew
    assert set(snuff_boundary) <= written


def test_boundary_seeds_reach_the_llm_prompts(taxonomy: Taxonomy) -> None:
    settings = load_profile("production").generator
    item = ItemSpec("snuff", Kind.POSITIVE, 0, Context(audience="adult", surface="message"))
    positive = build_prompt(taxonomy, GenerationRequest("snuff", Kind.POSITIVE, None, (item,), 0), settings, 0).user
    text = taxonomy.category("extreme_gore").seeds.boundary["snuff"][0]
    assert f"- {text} (not extreme_gore)" in positive

    item = ItemSpec("extreme_gore", Kind.HARD_NEGATIVE, 0, Context(audience="general", surface="message"))
    request = GenerationRequest("extreme_gore", Kind.HARD_NEGATIVE, None, (item,), 0)
    negative = build_prompt(taxonomy, request, settings, 0).user
    assert "NOT hard negatives" in negative and f"- {text} (snuff)" in negative


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["seeds"].update(boundary={"nope": ["x"]}), "seeds.boundary.nope: 'nope' is not another category"),
        (lambda c: c["seeds"].update(boundary={"extreme_gore": ["x"]}), "is not another category"),
        (lambda c: c["seeds"].update(boundary={"snuff": ["gore fetish chat"]}), "own positive signals ['gore fetish']"),
        (lambda c: c["seeds"].update(boundary={"snuff": ["a {nobody} fantasy"]}), "unknown slots ['nobody']"),
    ],
)
def test_bad_boundary_seeds_are_refused(taxonomy_dict: dict[str, Any], change: Any, message: str) -> None:
    gore = next(c for c in taxonomy_dict["categories"] if c["name"] == "extreme_gore")
    change(gore)
    with pytest.raises(ConfigError) as caught:
        parse_taxonomy(taxonomy_dict)
    assert message in str(caught.value)


# ---- anti_trans -> hate_speech (log Exp 31) -------------------------------------------------------------------


def test_the_secondary_rule_is_configured_as_the_log_settled_it(taxonomy: Taxonomy) -> None:
    rules = taxonomy.category("anti_trans").secondary_label_rules
    assert [(rule.phrases, rule.label) for rule in rules] == [(LOG_SECONDARY_PHRASES, "hate_speech")]
    assert [c.name for c in taxonomy.categories if c.secondary_label_rules] == ["anti_trans"]


def test_secondary_labels_match_phrases_not_identity_words(taxonomy: Taxonomy) -> None:
    anti_trans = taxonomy.category("anti_trans")
    assert anti_trans.secondary_labels("You\u2019ll never be one of us") == ["hate_speech"]  # typographic apostrophe
    assert anti_trans.secondary_labels("they are mentally ill") == ["hate_speech"]
    assert anti_trans.secondary_labels("mentally illustrated zine") == []  # phrases are word-bounded
    assert anti_trans.secondary_labels("proud trans woman, verified") == []  # identity terms alone never co-label


def test_generation_applies_the_rule_to_anti_trans_positives_only(
    taxonomy: Taxonomy, local_profile: Profile, tmp_path: Path
) -> None:
    generate_category(taxonomy, local_profile, "anti_trans", tmp_path / "out")
    records = read_jsonl(tmp_path / "out" / "records.jsonl")
    rule = taxonomy.category("anti_trans").secondary_label_rules[0]
    positives = [r for r in records if r.source.kind is Kind.POSITIVE and r.source.prompt_id.count("~") == 0]
    with_phrase = [r for r in positives if rule.matches(r.text)]
    # the generator's filler words break some phrases ("never just be a real"): those stay anti_trans only
    assert with_phrase and len(with_phrase) < len(positives)
    assert all("hate_speech" in r.labels for r in with_phrase)
    assert all(r.labels == ("anti_trans",) for r in positives if not rule.matches(r.text))
    assert all(not r.labels for r in records if r.source.kind in (Kind.HARD_NEGATIVE, Kind.INNOCUOUS))
    by_id = {r.id: r for r in positives}
    perturbed = [r for r in records if r.source.kind is Kind.PERTURBATION and r.source.origin_id in by_id]
    assert perturbed and all(r.labels == by_id[r.source.origin_id].labels for r in perturbed)  # twins keep the label set


def test_the_rule_leaves_other_records_alone(taxonomy: Taxonomy) -> None:
    context = Context(audience="general", surface="message")

    def record(labels: tuple[str, ...], kind: Kind, category: str) -> Any:
        source = Source(generator="offline", model="m", prompt_id="p", category=category, kind=kind)
        return make_record("you'll never be a real one", context, labels, source)

    untouched = [record((), Kind.HARD_NEGATIVE, "anti_trans"), record(("harassment",), Kind.POSITIVE, "harassment")]
    assert with_secondary_labels(taxonomy, untouched) == untouched
    [added] = with_secondary_labels(taxonomy, [record(("anti_trans",), Kind.POSITIVE, "anti_trans")])
    assert added.labels == ("anti_trans", "hate_speech")


def test_bad_secondary_rules_are_refused(taxonomy_dict: dict[str, Any]) -> None:
    anti_trans = next(c for c in taxonomy_dict["categories"] if c["name"] == "anti_trans")
    anti_trans["secondary_label_rules"] = [{"phrases": ["x"], "label": "anti_trans"}]
    with pytest.raises(ConfigError, match=r"secondary_label_rules\[0\]\.label: 'anti_trans' is not another category"):
        parse_taxonomy(taxonomy_dict)
