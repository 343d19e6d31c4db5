from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tiergate.components.generate.offline import OfflineGenerator
from tiergate.components.generate.plan import chunk_requests, plan_category, secondary_assignments
from tiergate.components.generate.step import categories_to_generate, generate_category
from tiergate.datasets import load_manifest
from tiergate.errors import ConfigError
from tiergate.profiles import Profile
from tiergate.records import Kind, read_jsonl
from tiergate.taxonomy import Taxonomy


def test_overlaps_take_the_end_of_the_positive_range(taxonomy: Taxonomy) -> None:
    assigned = secondary_assignments(taxonomy, "sextortion", 100)
    assert assigned[:10] == [None] * 10
    assert Counter(assigned) == {"harassment": 65, "ncii": 25, None: 10}
    assert set(assigned[10:35]) == {"ncii"} and set(assigned[35:]) == {"harassment"}
    # Changing a rate never moves a single-label item: the prefix stays the same.
    assert secondary_assignments(taxonomy, "threats", 50) == [None] * 50


def test_plan_contexts_respect_allowed_audiences(taxonomy: Taxonomy) -> None:
    counts = taxonomy.counts_for("adult_content", "local")
    items = plan_category(taxonomy, "adult_content", counts, seed=42)
    positives = [item for item in items if item.kind is Kind.POSITIVE]
    assert len(positives) == counts.positives
    assert {item.context.audience for item in positives} == {"general"}
    others = plan_category(taxonomy, "threats", taxonomy.counts_for("threats", "local"), seed=42)
    assert {item.context.audience for item in others} == {"general", "adult"}


def test_chunks_never_mix_kind_or_secondary(taxonomy: Taxonomy) -> None:
    items = plan_category(taxonomy, "sextortion", taxonomy.counts_for("sextortion", "production"), seed=1)
    requests = list(chunk_requests(items, 10))
    assert sum(len(request.items) for request in requests) == len(items)
    for request in requests:
        assert len(request.items) <= 10
        assert {(item.kind, item.secondary) for item in request.items} == {(request.kind, request.secondary)}


def test_offline_texts_are_deterministic_and_filled(taxonomy: Taxonomy) -> None:
    items = plan_category(taxonomy, "threats", taxonomy.counts_for("threats", "local"), seed=42)
    first = [OfflineGenerator(taxonomy, 42).write(item) for item in items]
    second = [OfflineGenerator(taxonomy, 42).write(item) for item in items]
    assert first == second
    assert not any("{" in text for text in first)
    assert [OfflineGenerator(taxonomy, 43).write(item) for item in items] != first


def test_csam_co_labels_use_hand_written_overlap_seeds(taxonomy: Taxonomy, local_profile: Profile, tmp_path: Path) -> None:
    generate_category(taxonomy, local_profile, "csam", tmp_path)
    records = read_jsonl(tmp_path / "records.jsonl")
    solicitation = [record for record in records if record.source.kind is Kind.POSITIVE and "solicitation" in record.labels]
    assert solicitation
    solicitation_seeds = taxonomy.category("solicitation").seeds.positive
    for record in solicitation:
        assert not any(seed.split("{")[0].strip() in record.text for seed in solicitation_seeds if seed.split("{")[0].strip())


def test_generate_category_dataset(taxonomy: Taxonomy, local_profile: Profile, tmp_path: Path) -> None:
    manifest = generate_category(taxonomy, local_profile, "profanity", tmp_path / "a")
    again = generate_category(taxonomy, local_profile, "profanity", tmp_path / "b")
    for name in ("records.jsonl", "manifest.json", "report.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert load_manifest(tmp_path / "a", taxonomy).files == again.files
    assert manifest.smoke_test and any("SMOKE-TEST" in note for note in manifest.notes)
    records = read_jsonl(tmp_path / "a" / "records.jsonl")
    kinds = Counter(record.source.kind for record in records)
    counts = taxonomy.counts_for("profanity", "local")
    assert kinds[Kind.INNOCUOUS] == counts.innocuous
    assert kinds[Kind.PERTURBATION] > 0
    # Context twins: the same positive text in the adult area, where profanity is allowed, carries no label.
    twins = [record for record in records if record.source.prompt_id.endswith("~context:adult")]
    assert twins
    for twin in twins:
        origin_prompt = twin.source.prompt_id.removesuffix("~context:adult")
        origin = next(r for r in records if r.source.prompt_id == origin_prompt)
        assert (origin.text, origin.context.surface) == (twin.text, twin.context.surface)
        assert origin.context.audience == "general" and twin.context.audience == "adult"
        assert "profanity" in origin.labels and "profanity" not in twin.labels
        assert twin.source.kind is Kind.CONTEXT
    for record in records:
        if record.source.kind is Kind.PERTURBATION:
            origin = next(r for r in records if r.source.prompt_id == record.source.prompt_id.removesuffix("~perturbed"))
            assert origin.id == record.source.origin_id
            assert origin.labels == record.labels and origin.text != record.text


def test_categories_to_generate_uses_the_profile(taxonomy: Taxonomy, local_profile: Profile) -> None:
    """list_categories resolves the profile's generation counts once, before the pipeline fans out."""
    assert categories_to_generate(taxonomy, local_profile, []) == taxonomy.labels
    assert categories_to_generate(taxonomy, local_profile, ["csam", "threats"]) == ["threats", "csam"]
    unknown_counts = local_profile.model_copy(update={"generation_counts": "nope"})
    with pytest.raises(ConfigError, match=r"generation\.counts has no profile 'nope'"):
        categories_to_generate(taxonomy, unknown_counts, [])
    with pytest.raises(ConfigError, match="unknown category 'nope'"):
        categories_to_generate(taxonomy, local_profile, ["nope"])
