"""Eval-leakage guard: no training text may be a regression vector, or a near-copy of one.

The vectors are the gate's exam. A training record equal to one (as the model reads it,
`tiergate.regression.reading_keys`) is the answer sheet; a near-copy (one word changed,
different case or punctuation, a disguise the normalisation undoes) teaches the same
answer. Either is quarantined with the vector it copies.

Near-copies are found with MinHash over character shingles of the folded text, an LSH
index over the (few) vectors queried by each (many) record, and the exact Jaccard of the
shingle sets deciding: the MinHash index only proposes candidates, so its estimate error
never decides a quarantine. The same matcher checks the other direction for tests: no
vector may be a near-copy of a generator seed or template (a vector the generator's own
data repeats measures memorisation, and its training data would all be quarantined).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from datasketch import MinHash, MinHashLSH

from tiergate.components.merge.dedupe import Quarantined
from tiergate.formatting import model_readings
from tiergate.profiles import LeakageSettings
from tiergate.records import Record, normalise_text
from tiergate.regression import Suite, reading_keys
from tiergate.taxonomy import SLOT, Taxonomy

_NOT_WORD = re.compile(r"[\W_]+")
_SEED = 1

_CANDIDATE_MARGIN = 0.2  # the index proposes pairs this far below the threshold; exact Jaccard decides


@dataclass(frozen=True)
class VectorMatch:
    suite: str
    vector_id: str
    similarity: float

    def reason(self) -> str:
        return (
            f"eval leakage: near-duplicate of regression vector {self.suite}/{self.vector_id} (similarity {self.similarity:.2f})"
        )


def keys_and_folded(text: str) -> tuple[set[str], list[str]]:
    """`reading_keys(text)` (the exact check), and every reading folded further for shingling: case-folded,
    punctuation and symbols dropped, spaces collapsed. One pass over the (costly) normalisation."""
    keys = {normalise_text(reading) for reading in model_readings(text)}
    out: list[str] = []
    for key in sorted(keys):
        simple = " ".join(_NOT_WORD.sub(" ", key).split())
        if simple not in out:
            out.append(simple)
    return keys, out


def folded(text: str) -> list[str]:
    return keys_and_folded(text)[1]


def shingles(text: str, size: int) -> frozenset[bytes]:
    """Character shingles of one folded reading (the whole text when shorter than a shingle)."""
    if len(text) <= size:
        return frozenset({text.encode("utf-8")})
    return frozenset(text[i : i + size].encode("utf-8") for i in range(len(text) - size + 1))


def jaccard(a: frozenset[bytes], b: frozenset[bytes]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class VectorIndex:
    """The regression vectors' shingle sets behind a MinHash LSH index; `matches(texts)` finds their near-copies."""

    def __init__(self, suites: Sequence[Suite], settings: LeakageSettings):
        self.settings = settings
        self.owners: list[tuple[str, str]] = []  # row -> (suite, vector id)
        self.sets: list[frozenset[bytes]] = []
        for suite in suites:
            for vector in suite.vectors:
                for reading in folded(vector.text):
                    self.owners.append((suite.suite, vector.id))
                    self.sets.append(shingles(reading, settings.shingle_size))
        self.lsh = MinHashLSH(threshold=max(0.05, settings.threshold - _CANDIDATE_MARGIN), num_perm=settings.num_perm)
        for row, signature in enumerate(self._signatures(self.sets)):
            self.lsh.insert(row, signature)

    def _signatures(self, sets: Sequence[frozenset[bytes]]) -> list[MinHash]:
        # crc32: deterministic (a merge must quarantine the same records every run) and far cheaper than sha1
        return MinHash.bulk([list(items) for items in sets], num_perm=self.settings.num_perm, seed=_SEED, hashfunc=zlib.crc32)

    def matches(self, texts: Sequence[str]) -> list[list[VectorMatch]]:
        """Per text, every vector at or above the threshold (its best reading's similarity), most similar first."""
        return self.matches_folded([folded(text) for text in texts])

    def matches_folded(self, texts: Sequence[list[str]]) -> list[list[VectorMatch]]:
        """`matches` for texts already folded (`keys_and_folded`)."""
        size = self.settings.shingle_size
        readings = [(index, shingles(reading, size)) for index, text in enumerate(texts) for reading in text]
        found: list[dict[tuple[str, str], float]] = [{} for _ in texts]
        for (index, items), signature in zip(readings, self._signatures([items for _, items in readings]), strict=True):
            for row in self.lsh.query(signature):
                similarity = jaccard(items, self.sets[row])
                if similarity >= self.settings.threshold and similarity > found[index].get(self.owners[row], -1.0):
                    found[index][self.owners[row]] = similarity
        return [
            sorted(
                (VectorMatch(*owner, similarity=round(value, 4)) for owner, value in hits.items()),
                key=lambda m: (-m.similarity, m.suite, m.vector_id),
            )
            for hits in found
        ]


def exclude_vectors(
    records: Sequence[Record], suites: Sequence[Suite], settings: LeakageSettings, batch: int = 4096
) -> tuple[list[Record], list[Quarantined]]:
    """Quarantine every record that is a regression vector (same model reading) or a near-copy of one.

    The exact check (`reading_keys`) comes first and needs no threshold; the near-copy check uses the
    profile's `merge.leakage`. Order is kept: `kept` is `records` minus the quarantined ones.
    """
    exact: dict[str, tuple[str, str]] = {}
    for suite in suites:
        for vector in suite.vectors:
            for key in reading_keys(vector.text):
                exact.setdefault(key, (suite.suite, vector.id))  # a disguise's key is its plain vector's: name the first
    index = VectorIndex(suites, settings)
    kept: list[Record] = []
    leaked: list[Quarantined] = []
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        readings = [keys_and_folded(record.text) for record in chunk]
        matches = index.matches_folded([folded_text for _, folded_text in readings])
        for record, (keys, _), found in zip(chunk, readings, matches, strict=True):
            owner = next((exact[key] for key in sorted(keys) if key in exact), None)
            if owner is not None:
                leaked.append(Quarantined(record, f"eval leakage: text is regression vector {owner[0]}/{owner[1]}"))
            elif found:
                leaked.append(Quarantined(record, found[0].reason()))
            else:
                kept.append(record)
    return kept, leaked


def vectors_copying(texts: Iterable[str], suites: Sequence[Suite], settings: LeakageSettings) -> list[tuple[str, VectorMatch]]:
    """(text, match) for every text a vector near-copies: feed it the generator's seeds and templates."""
    unique = sorted(set(texts))
    found = VectorIndex(suites, settings).matches(unique)
    return [(text, match) for text, matches in zip(unique, found, strict=True) for match in matches]


def near_duplicate_vectors(suites: Sequence[Suite], settings: LeakageSettings) -> list[tuple[str, VectorMatch]]:
    """(vector id, match) for every pair of distinct vectors that are near-copies of each other."""
    vectors = [vector for suite in suites for vector in suite.vectors]
    hits = VectorIndex(suites, settings).matches([vector.text for vector in vectors])
    return [
        (vector.id, match) for vector, found in zip(vectors, hits, strict=True) for match in found if match.vector_id != vector.id
    ]


def expand_template(template: str, slots: dict[str, list[str]]) -> list[str]:
    """Every filling of a seed's `{slot}`s with the generator's slot values (seeds use at most a couple)."""
    texts = [template]
    for name in SLOT.findall(template):
        texts = [text.replace("{" + name + "}", value, 1) for text in texts for value in slots[name]]
    return texts


def generator_texts(taxonomy: Taxonomy, vocabulary: dict[str, Any]) -> list[str]:
    """What the offline generator builds texts from: every seed (positive, hard negative, overlap) and innocuous
    template, slots filled every way."""
    templates = [template for surface in vocabulary["innocuous"].values() for template in surface]
    for category in taxonomy.categories:
        templates += category.seeds.positive + category.seeds.hard_negative
        templates += [seed for seeds in category.overlap_seeds.values() for seed in seeds]
    return sorted({text for template in templates for text in expand_template(template, vocabulary["slots"])})
