from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tiergate.errors import ConfigError
from tiergate.taxonomy import Taxonomy, load_taxonomy, parse_taxonomy, taxonomy_sha256

# The seed log's order (constants.py, then the 14 expansion categories, then anti_trans)
# and its final tier table, as issue #3 spells them out.
SEED_ORDER = [
    "threats",
    "hate_speech",
    "csam",
    "scam_patterns",
    "contact_info",
    "solicitation",
    "spam",
    "profanity",
    "adult_content",
    "doxxing",
    "predatory_behavior",
    "law_enforcement",
    "sextortion",
    "ncii",
    "trafficking",
    "self_harm",
    "impersonation",
    "harassment",
    "age_play",
    "bestiality",
    "necrophilia",
    "scat",
    "snuff",
    "extreme_gore",
    "bdsm",
    "edge_play",
    "furry",
    "watersports",
    "roleplay",
    "financial_coercion",
    "consent_violation",
    "intoxication",
    "anti_trans",
]
SEED_TIERS = {
    1: "csam trafficking bestiality self_harm",
    2: "predatory_behavior ncii sextortion threats",
    3: "harassment financial_coercion doxxing intoxication consent_violation hate_speech anti_trans extreme_gore snuff",
    4: "spam scam_patterns impersonation law_enforcement age_play necrophilia contact_info",
    5: "solicitation adult_content bdsm edge_play roleplay furry watersports scat profanity",
}


def test_order_and_tiers_match_the_seed(taxonomy: Taxonomy) -> None:
    assert taxonomy.labels == SEED_ORDER
    for tier, names in SEED_TIERS.items():
        for name in names.split():
            assert taxonomy.category(name).tier == tier, name
    assert taxonomy.tier_vector() == [taxonomy.category(name).tier for name in taxonomy.labels]
    assert taxonomy.optional_labels() == [c.name for c in taxonomy.categories if c.optional]


def test_tier_policy_matches_the_log(taxonomy: Taxonomy) -> None:
    gates = {tier: policy.f1_gate for tier, policy in taxonomy.tiers.items()}
    assert gates == {1: 0.93, 2: 0.84, 3: 0.84, 4: 0.85, 5: 0.80}
    caps = {tier: policy.pos_weight_cap for tier, policy in taxonomy.tiers.items()}
    assert caps == {1: 10, 2: 10, 3: 10, 4: 8, 5: 6}
    assert taxonomy.tiers[1].recall_floor == 0.90
    assert all(taxonomy.tiers[tier].recall_floor is None for tier in (2, 3, 4, 5))
    assert taxonomy.threshold_bounds("harassment") == (0.30, 0.65)
    assert taxonomy.threshold_bounds("extreme_gore") == (0.30, 0.75)
    assert taxonomy.threshold_bounds("csam") == (0.20, 0.60)
    assert taxonomy.category("anti_trans").optional
    assert sum(category.optional for category in taxonomy.categories) == 1


def test_overlaps_are_the_logs_final_category_overlaps(taxonomy: Taxonomy) -> None:
    """Exp 15's rates, plus two of Exp 16's failed co-detection scenarios made by construction."""
    overlaps = {category.name: category.overlaps for category in taxonomy.categories if category.overlaps}
    assert overlaps == {
        "scam_patterns": {"contact_info": 0.25},
        "trafficking": {"solicitation": 0.25},
        "doxxing": {"harassment": 0.65},
        "sextortion": {"harassment": 0.65, "ncii": 0.25},
        "predatory_behavior": {"harassment": 0.35},
        "csam": {"solicitation": 0.30, "predatory_behavior": 0.55},
        "intoxication": {"predatory_behavior": 0.55, "consent_violation": 0.20},
    }


def test_counts_with_overrides(taxonomy_dict: dict[str, Any]) -> None:
    taxonomy_dict["categories"][17]["generation"] = {"production": {"hard_negatives": 600}}
    loaded = parse_taxonomy(taxonomy_dict)
    assert loaded.counts_for("harassment", "production").hard_negatives == 600
    assert loaded.counts_for("harassment", "local").hard_negatives == loaded.generation.counts["local"].hard_negatives
    with pytest.raises(ConfigError, match="no profile 'nope'"):
        loaded.counts_for("harassment", "nope")


def test_hash_depends_on_order(taxonomy: Taxonomy) -> None:
    swapped = list(taxonomy.labels)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    assert taxonomy_sha256(swapped) != taxonomy.labels_sha256
    assert taxonomy_sha256(list(taxonomy.labels)) == taxonomy.labels_sha256


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(surprise=1), "surprise: Extra inputs are not permitted"),
        (lambda d: d["categories"][0].update(colour="red"), "categories.0.colour"),
        (lambda d: d["categories"][1].update(name="threats"), "duplicate category 'threats'"),
        (lambda d: d["tiers"].pop(5), "tier 5 has no entry under 'tiers'"),
        (lambda d: d["categories"][9]["overlaps"].update(harasment=0.5), "overlaps.harasment: unknown category"),
        (lambda d: d["categories"][0].update(threshold_max=0.95), "threshold_max: 0.95 is outside tier 2 range"),
        (lambda d: d["categories"][0].update(tier="two"), "categories.0.tier"),
        (lambda d: d["tiers"][1].update(threshold_range=[0.6, 0.2]), "lower bound 0.6 must be below"),
        (lambda d: d["tiers"][1].update(f1_gate=1.5), "tiers.1.f1_gate: Input should be less than or equal to 1"),
        (lambda d: d["tiers"][1].update(recall_floor=-0.1), "tiers.1.recall_floor"),
        (
            lambda d: d["categories"][0].update(threshold_min=0.5, threshold_max=0.3),
            "threshold_min: 0.5 is above threshold_max 0.3",
        ),
        (lambda d: d["categories"][0]["seeds"]["positive"].append("hi {nobody}"), "unknown slots ['nobody']"),
        (lambda d: d["categories"][2]["overlap_seeds"].update(spam=["x"]), "overlap_seeds.spam"),
        (lambda d: d["categories"][0].update(allowed_in=["kids"]), "unknown audience 'kids'"),
        (lambda d: d["categories"][0].update(colabel_rules=[{"keywords": ["x"], "label": "nope"}]), "colabel_rules[0].label"),
    ],
)
def test_bad_taxonomy_names_the_key(taxonomy_dict: dict[str, Any], mutate: Any, message: str) -> None:
    mutate(taxonomy_dict)
    with pytest.raises(ConfigError) as caught:
        parse_taxonomy(taxonomy_dict)
    assert message in str(caught.value)


def test_poisoned_hard_negative_seed_is_refused(taxonomy_dict: dict[str, Any]) -> None:
    """docs/lessons.md#poisoned-seed: a coercive 'negative' seed poisoned 200 examples. Such a seed cannot load."""
    threats = taxonomy_dict["categories"][0]
    index = len(threats["seeds"]["hard_negative"])
    threats["seeds"]["hard_negative"].append("pay up by friday or you will regret it")
    with pytest.raises(ConfigError, match=rf"seeds\.hard_negative\[{index}\].*own positive signals \['you will regret'\]"):
        parse_taxonomy(taxonomy_dict)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_taxonomy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_taxonomy(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_taxonomy(bad)


def test_cli_show_json_matches_the_seed(tmp_path: Path, taxonomy_dict: dict[str, Any]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tiergate.cli.main", "taxonomy", "show", "--json"], capture_output=True, text=True, check=True
    )
    shown = json.loads(out.stdout)
    assert [item["name"] for item in shown["categories"]] == SEED_ORDER
    assert {item["name"]: item["tier"] for item in shown["categories"]} == {
        name: tier for tier, names in SEED_TIERS.items() for name in names.split()
    }
    assert shown["sha256"] == taxonomy_sha256(SEED_ORDER)

    taxonomy_dict["categories"][1]["name"] = "threats"
    bad = tmp_path / "dup.yaml"
    bad.write_text(yaml.safe_dump(taxonomy_dict), encoding="utf-8")
    failed = subprocess.run(
        [sys.executable, "-m", "tiergate.cli.main", "taxonomy", "validate", str(bad)], capture_output=True, text=True
    )
    assert failed.returncode == 2
    assert failed.stderr.count("\n") == 1 and "duplicate category 'threats'" in failed.stderr
    assert "Traceback" not in failed.stderr
