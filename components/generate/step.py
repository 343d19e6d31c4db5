"""The generate step: plan → write texts → records (+ context twins, perturbations) → dataset.

One call per category, so the pipeline can fan out with ParallelFor. Output directory:
`records.jsonl`, `report.json` (requested vs produced, refusals, malformed, cache hits,
shortfalls) and `manifest.json`.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tiergate.artifacts import GENERATION_REPORT, RECORDS
from tiergate.components.generate.base import GenerationResult, Outcome, TextGenerator
from tiergate.components.generate.llm import LLMGenerator, ResponseCache
from tiergate.components.generate.offline import OfflineGenerator, load_vocabulary
from tiergate.components.generate.perturb import perturbations
from tiergate.components.generate.plan import chunk_requests, plan_category
from tiergate.components.generate.secondary import with_secondary_labels
from tiergate.datasets import DatasetManifest, file_entry, write_manifest
from tiergate.errors import GenerationError
from tiergate.hashing import write_json
from tiergate.outputs import atomic_output
from tiergate.profiles import Profile
from tiergate.progress import Progress
from tiergate.records import Context, Kind, Record, Source, make_record, record_sort_key, write_jsonl
from tiergate.taxonomy import GenerationCounts, Taxonomy

log = logging.getLogger(__name__)
SMOKE_TEST_NOTE = "SMOKE-TEST DATA: written by the offline template generator; not a real moderation corpus."


def parse_counts(text: str) -> dict[str, int]:
    """`positives=100,hard_negatives=50` -> {...}; empty -> {}. Unknown kinds or bad numbers are errors."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, separator, value = item.partition("=")
        if not separator or key.strip() not in GenerationCounts.model_fields or not value.strip().isdigit():
            raise GenerationError(
                f"counts entry {item!r} must look like KIND=N with KIND in {', '.join(GenerationCounts.model_fields)}"
            )
        counts[key.strip()] = int(value)
    return counts


def categories_to_generate(taxonomy: Taxonomy, profile: Profile, wanted: Sequence[str]) -> list[str]:
    """`wanted` (all when empty) in taxonomy order, each validated with its counts under `profile`.

    An unknown category, or a profile whose `generation_counts` the taxonomy does not define,
    is a clear error here rather than in every generate task.
    """
    for name in wanted:
        taxonomy.category(name)  # unknown name -> clear error
    names = [name for name in taxonomy.labels if not wanted or name in wanted]
    for name in names:
        taxonomy.counts_for(name, profile.generation_counts)
    return names


def make_generator(taxonomy: Taxonomy, profile: Profile, cache_dir: Path | None, http_client: Any = None) -> TextGenerator:
    """The generator the profile names. `http_client` lets tests put a fake at the HTTP layer."""
    settings = profile.generator
    if settings.kind == "offline":
        return OfflineGenerator(taxonomy, profile.seed, model=settings.model)
    if cache_dir is None:
        raise GenerationError(f"the {settings.kind} generator needs a response cache directory (--cache-dir)")
    cache = ResponseCache(cache_dir)
    if settings.kind == "anthropic":
        from tiergate.components.generate.anthropic_backend import AnthropicBackend, make_client

        backend: Any = AnthropicBackend(settings, make_client(settings, http_client))
    else:
        import os

        from tiergate.components.generate.openai_backend import OpenAICompatibleBackend

        backend = OpenAICompatibleBackend(settings, http_client, api_key=os.environ.get(settings.api_key_env))
    return LLMGenerator(settings.kind, taxonomy, settings, backend, cache, profile.seed)


def _records_from_results(results: Sequence[GenerationResult], generator: TextGenerator) -> list[Record]:
    records = []
    for result in results:
        for position, text in enumerate(result.texts):
            item = result.request.items[position]
            source = Source(
                generator=generator.name,
                model=generator.model,
                prompt_id=f"{result.prompt_id}#{position}",
                category=item.category,
                kind=item.kind,
                secondary=item.secondary,
            )
            records.append(make_record(text, item.context, item.labels, source))
    return records


def context_twins(taxonomy: Taxonomy, records: Sequence[Record]) -> list[Record]:
    """The same positive text in an audience where its category is allowed, without that label.

    This is how context sensitivity is taught: identical words, different context, different labels.
    """
    twins = []
    for record in records:
        if record.source.kind is not Kind.POSITIVE or record.source.category is None:
            continue
        for audience in taxonomy.category(record.source.category).allowed_in:
            labels = [label for label in record.labels if audience not in taxonomy.category(label).allowed_in]
            source = record.source.model_copy(
                update={
                    "kind": Kind.CONTEXT if not labels else Kind.POSITIVE,
                    "prompt_id": record.source.prompt_id + f"~context:{audience}",
                }
            )
            context = Context(audience=audience, surface=record.context.surface)
            twins.append(make_record(record.text, context, labels, source))
    return twins


def _report(
    category: str, requested: Counter[str], results: Sequence[GenerationResult], records: Sequence[Record], profile: Profile
) -> dict[str, Any]:
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    produced: Counter[str] = Counter()
    cached = 0
    details = []
    for result in results:
        kind = result.request.kind.value
        outcomes[kind][result.outcome.value] += 1
        produced[kind] += len(result.texts)
        cached += int(result.cached)
        if result.outcome is not Outcome.OK:
            details.append(
                {"kind": kind, "prompt_id": result.prompt_id, "outcome": result.outcome.value, "detail": result.detail}
            )
    shortfalls = []
    for kind, count in requested.items():
        if count and produced[kind] < profile.generator.min_yield_fraction * count:
            shortfalls.append({"kind": kind, "requested": count, "produced": produced[kind]})
    return {
        "category": category,
        "requested": dict(requested),
        "produced": dict(produced),
        "outcomes": {kind: dict(counter) for kind, counter in sorted(outcomes.items())},
        "refused_requests": sum(counter["refused"] for counter in outcomes.values()),
        "malformed_requests": sum(counter["malformed"] for counter in outcomes.values()),
        "error_requests": sum(counter["error"] for counter in outcomes.values()),
        "cached_requests": cached,
        "records_by_kind": dict(sorted(Counter(record.source.kind.value for record in records).items())),
        "shortfalls": shortfalls,
        "problems": details,
    }


def _manifest_notes(category: str, report: dict[str, Any], smoke_test: bool) -> list[str]:
    """What a consumer of this dataset must know: smoke-test data, shortfalls (also logged), refusals."""
    notes = [SMOKE_TEST_NOTE] if smoke_test else []
    for shortfall in report["shortfalls"]:
        note = f"SHORTFALL {category}/{shortfall['kind']}: produced {shortfall['produced']} of {shortfall['requested']} requested"
        notes.append(note)
        log.warning(note)
    if report["refused_requests"]:
        notes.append(f"{category}: {report['refused_requests']} request(s) refused by the model")
    return notes


def generate_category(
    taxonomy: Taxonomy,
    profile: Profile,
    category: str,
    out_dir: Path,
    generator: TextGenerator | None = None,
    cache_dir: Path | None = None,
    counts_override: dict[str, int] | None = None,
    overwrite: bool = False,
) -> DatasetManifest:
    """Generate one category's dataset into `out_dir` (written whole, see `tiergate.outputs`); returns its manifest."""
    generator = generator or make_generator(taxonomy, profile, cache_dir)
    counts = taxonomy.counts_for(category, profile.generation_counts)
    if counts_override:
        counts = GenerationCounts(**{**counts.model_dump(), **counts_override})
    items = plan_category(taxonomy, category, counts, profile.seed)
    requested = Counter(item.kind.value for item in items)
    requests = list(chunk_requests(items, profile.generator.examples_per_request))
    log.info("generate %s: %d items in %d requests with %s", category, len(items), len(requests), generator.name)
    results = generator.run(requests, Progress(f"generate {category}"))

    records = with_secondary_labels(taxonomy, _records_from_results(results, generator))
    records += context_twins(taxonomy, records)
    records += perturbations(
        records, profile.perturbation.fraction, profile.perturbation.max_edits, profile.seed, load_vocabulary()
    )
    unique = {(record.id, str(record.context), record.labels, record.source.kind): record for record in records}
    records = sorted(unique.values(), key=record_sort_key)

    with atomic_output(Path(out_dir), overwrite) as staging:
        records_path = staging / RECORDS
        write_jsonl(records_path, records)
        report = _report(category, requested, results, records, profile)
        write_json(staging / GENERATION_REPORT, report)

        notes = _manifest_notes(category, report, generator.smoke_test)
        manifest = DatasetManifest(
            dataset="generated",
            labels=taxonomy.labels,
            taxonomy_sha256=taxonomy.labels_sha256,
            files={
                RECORDS: file_entry(records_path, len(records)),
                GENERATION_REPORT: file_entry(staging / GENERATION_REPORT, 0),
            },
            counts={"category": category, "records": len(records), "by_kind": report["records_by_kind"]},
            config={
                "profile": profile.model_dump(mode="json"),
                "taxonomy_content_sha256": taxonomy.content_sha256,
                "generator": {"name": generator.name, "model": generator.model},
            },
            smoke_test=generator.smoke_test,
            notes=notes,
        )
        write_manifest(staging, manifest)
    if report["shortfalls"] and profile.generator.fail_on_shortfall:
        raise GenerationError(f"{category}: generation shortfall {report['shortfalls']} (generator.fail_on_shortfall is true)")
    return manifest
