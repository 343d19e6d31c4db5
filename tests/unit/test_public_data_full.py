"""Every public data set imported in full from ../shared/public-data, its row counts checked against that
folder's README.

The only tests that need the downloads: they run where ../shared/public-data exists (or
$TIERGATE_PUBLIC_DATA names a folder of the same shape) and are skipped elsewhere; the adapters
themselves are tested on fixtures in test_public_adapters.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tiergate.components.generate.importers import import_public
from tiergate.dataset_adapters import load_adapters
from tiergate.taxonomy import Taxonomy

PUBLIC_DATA = Path(os.environ.get("TIERGATE_PUBLIC_DATA") or Path(__file__).resolve().parents[2] / "../shared/public-data")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PUBLIC_DATA.is_dir(), reason=f"the public data sets are not downloaded at {PUBLIC_DATA}"),
]

# rows as ../shared/public-data/README.md counts them (bad rows included). ToxiGen's rows are the
# statements of its prompt lines, counted by file below; surge_ai is 1,000 comments + 1,598 lexicon terms.
README_ROWS = {
    "edos": 20_000,
    "toxic_spans": 16_100,
    "ailuminate": 1_200,
    "convabuse": 4_185,
    "threatgram101": 15_076,
    "sms_spam_collection": 5_574,
    "presidio_synth": 1_500,
    "surge_ai": 1_000 + 1_598,
    "diasafety": 11_209,
    "davidson": 24_783,
    "reddit_mental_health": 7_020,
    "xstest": 450,
    "simplesafetytests": 100,
}
# sets that give positives only: EDOS judged sexism alone ('not sexist' may be racist or threatening) and one
# sexism vector per post says which sexism, not that there is no threat
ONLY_POSITIVES = {"edos"}
MAX_BAD = 0.005  # a handful of empty texts in a set is the data; more means a reader or an adapter is wrong


@pytest.fixture(scope="module")
def imported(taxonomy: Taxonomy, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("full")
    train = import_public(taxonomy, PUBLIC_DATA, out / "train")
    evaluation = import_public(taxonomy, PUBLIC_DATA, out / "evaluation", role="evaluation")
    assert not train.notes or all("bad row" in note for note in train.notes), train.notes
    return {**train.counts["by_dataset"], **evaluation.counts["by_dataset"]}


def test_every_set_is_imported(imported: dict[str, dict[str, Any]]) -> None:
    assert sorted(imported) == sorted(adapter.name for adapter in load_adapters())


@pytest.mark.parametrize("name", sorted(README_ROWS))
def test_row_counts_match_the_readme(imported: dict[str, dict[str, Any]], name: str) -> None:
    counts = imported[name]
    assert counts["rows"] == README_ROWS[name]
    assert counts["bad"] <= MAX_BAD * counts["rows"], counts["bad"]
    assert counts["kept"] + counts["bad"] + counts["skipped"] == counts["rows"]


def test_toxigen_reads_every_prompt_line_as_its_statements(imported: dict[str, dict[str, Any]]) -> None:
    files = imported["toxigen"]["by_file"]
    assert len(files) >= 26  # the README's 26 files; the download holds 16 hate and 15 neutral
    for name, counts in files.items():
        assert 1_000 * 4 <= counts["rows"] <= 1_000 * 8, (name, counts)  # 1,000 lines of 5-8 statements
        assert counts["bad"] == 0, name


def test_every_mapped_category_gets_real_positives(imported: dict[str, dict[str, Any]]) -> None:
    for adapter in load_adapters():
        by_category = imported[adapter.name]["by_category"]
        for category in adapter.positive_categories:
            assert by_category[category]["positive"] > 0, (adapter.name, category)
        negatives = sum(by_category[category]["negative"] for category in adapter.covers)
        assert (negatives > 0) is (adapter.name not in ONLY_POSITIVES), adapter.name
