"""The model-based poisoned-seed screen, with a real (tiny) previous model scoring the texts.

Log Exp 29: a predatory_behavior "hard negative" seed was a findom tribute demand ("slow on
tributes ... $200 and we're good"); 200 examples generated from it were labelled safe and
harassment / ncii fell below the gate. It carries none of the taxonomy's signal words, so the
keyword screen passes it. A previous model that has learnt coercive payment demands scores it
as financial_coercion, and `PreviousModelScreener` quarantines it before training.

The previous model here is a small classifier trained on the offline generator's data plus a
small human-labelled set of coercive payment demands, exported to ONNX with tiergate's metadata
and laid out as a served repository. Nothing is stubbed: the screener loads the ONNX model,
tokenizer and thresholds through the serving code (`tiergate.inference`) and scores the text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.dataset_helpers import write_dataset
from tiergate.components.merge.screen import KeywordScreener, PreviousModelScreener, screen
from tiergate.errors import InputDataError
from tiergate.profiles import load_profile
from tiergate.records import Context, Kind, Record, Source, make_record
from tiergate.taxonomy import Taxonomy

ADULT = Context(audience="adult", surface="message")
GENERAL = Context(audience="general", surface="message")

# A short, non-graphic stand-in written in the pattern of the Exp 29 seed (never a taxonomy seed).
TRIBUTE = "you've been slow with your tributes lately, $200 and we're good, that's just how it works, pet"

AMOUNTS = ["$50", "$120", "$200", "$80", "$300", "$40"]  # a poisoned batch varies like a generated one

# What the previous model learnt as financial_coercion: demands for money under relational pressure.
COERCIVE_DEMANDS = [
    "you're behind on what you owe me, send $120 today and we're good",
    "late again with my money, $80 by tonight or we're done",
    "you owe me $300 for last week, pay up and we're good",
    "i expect my $50 every friday, that's just how this works",
    "pay what you owe, $200 now, then we can talk again",
    "slow with the payments again? $40 tonight or i stop answering",
    "send my $120 and we're fine, that's how it works between us",
    "you've been slacking on my allowance, $300 and all is forgiven",
    "you've been slow paying me lately, $80 and we're good again",
    "my weekly $200 is late, pay it and we're good, that's the deal",
    "that's just how it works, you pay me $50 and i stay nice",
    "you're slow with my money again, $40 now and we're good",
]
ORDINARY_MONEY_TALK = [
    "thanks, the $120 deposit arrived, see you soon",
    "invoice for $80 attached, due in thirty days",
    "can we split the $300 dinner bill?",
    "refund of $50 processed, allow three days",
    "i paid the $200 for the tickets, pay me back whenever",
    "the gym membership is $40 a month now",
    "sent you $120 for the concert, thanks for getting the tickets",
    "my prices went up to $300 this year, details in my bio",
    "the plumber was slow but the $80 repair works fine",
    "we're good for friday, the table is booked",
    "that's how the app works, payments clear in a day",
    "lately the bus has been slow, running late again",
]
GENERATED_CATEGORIES = ("financial_coercion", "harassment", "predatory_behavior")


def _human(text: str, labels: tuple[str, ...], kind: Kind, context: Context) -> Record:
    source = Source(generator="human", model="curated", prompt_id=f"curated:{text}", category=None, kind=kind)
    return make_record(text, context, labels, source)


OPENERS = ["", "hey, ", "listen, "]
TAILS = ["", " thanks", " ok?"]


def curated_records() -> list[Record]:
    """The curated set, each text framed a few ways (as a labeller's set of real messages would vary)."""
    records = []
    for opener in OPENERS:
        for tail in TAILS:
            context = ADULT if len(records) % 2 else GENERAL
            records += [
                _human(opener + text + tail, ("financial_coercion",), Kind.POSITIVE, context) for text in COERCIVE_DEMANDS
            ]
            records += [_human(opener + text + tail, (), Kind.INNOCUOUS, context) for text in ORDINARY_MONEY_TALK]
    return records


class BagOfWords:
    """The previous model: token embeddings averaged over the attention mask, then one linear layer.

    Small enough to train in seconds on two shared cores, and a real classifier over the serving
    inputs (`input_ids`, `attention_mask` -> `logits`), so the screener runs the real serving path
    on it. (The shared tiny BERT of tests/tiny_model.py passes `vocab_file=`, which transformers 5
    ignores: its tokenizer maps every word to [UNK], so it cannot tell one text from another.)
    """

    @staticmethod
    def module(vocabulary_size: int, labels: int) -> Any:
        import torch

        class Module(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embedding = torch.nn.Embedding(vocabulary_size, 32)
                self.output = torch.nn.Linear(32, labels)

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                mask = attention_mask.unsqueeze(-1).to(torch.float32)
                pooled = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                return self.output(pooled)

        return Module()


def write_tokenizer(taxonomy: Taxonomy, out_dir: Path) -> Any:
    """A word-level BERT tokenizer over the taxonomy's and the curated set's words."""
    from transformers import BertTokenizer

    from tests.tiny_model import tiny_vocabulary

    out_dir.mkdir(parents=True, exist_ok=True)
    known = tiny_vocabulary(taxonomy)
    extra = {word for text in COERCIVE_DEMANDS + ORDINARY_MONEY_TALK for word in re.findall(r"[a-z0-9']+", text)}
    vocabulary = known + sorted(extra - set(known))
    (out_dir / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(out_dir / "vocab.txt"), do_lower_case=True)
    assert tokenizer.vocab_size == len(vocabulary)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def train(taxonomy: Taxonomy, tokenizer: Any, records: list[Record], max_length: int) -> Any:
    """Fit the bag of words with plain BCE on the records (model input built by `format_input`, as in training)."""
    import torch

    from tiergate.formatting import format_input
    from tiergate.labels import encode_targets

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs fastest on one thread (and the cores are shared)
    inputs = tokenizer(
        [format_input(record.text, record.context) for record in records],
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    targets = torch.tensor([encode_targets(record, taxonomy.labels) for record in records], dtype=torch.float32)
    model = BagOfWords.module(tokenizer.vocab_size, len(taxonomy.labels))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(inputs["input_ids"], inputs["attention_mask"]), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.set_num_threads(threads)
    return model.eval()


def package(taxonomy: Taxonomy, model: Any, tokenizer: Any, out_dir: Path, max_length: int) -> Path:
    """The files a served repository holds for the screener: classifier ONNX (with tiergate metadata), tokenizer,
    thresholds (0.5: the screener reads scores, not decisions)."""
    import onnx
    import torch

    from tiergate.artifacts import RepositoryLayout
    from tiergate.onnx_model import META_PREFIX

    layout = RepositoryLayout(out_dir)
    layout.classifier_onnx.parent.mkdir(parents=True)
    example = torch.ones((1, max_length), dtype=torch.int64)
    torch.onnx.export(
        model,
        (example, example),
        str(layout.classifier_onnx),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    exported = onnx.load(str(layout.classifier_onnx))
    for key, value in {"labels": json.dumps(taxonomy.labels), "max_length": str(max_length)}.items():
        exported.metadata_props.add(key=META_PREFIX + key, value=value)
    onnx.save(exported, str(layout.classifier_onnx))
    tokenizer.save_pretrained(layout.tokenizer_dir)
    layout.thresholds.parent.mkdir(parents=True)
    layout.thresholds.write_text(
        json.dumps(
            {
                "labels": taxonomy.labels,
                "taxonomy_sha256": taxonomy.labels_sha256,
                "thresholds": dict.fromkeys(taxonomy.labels, 0.5),
                "tiers": {category.name: category.tier for category in taxonomy.categories},
                "optional": taxonomy.optional_labels(),
            }
        ),
        encoding="utf-8",
    )
    return out_dir


@pytest.fixture(scope="module")
def previous_model(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy) -> Path:
    """A model repository whose classifier learnt financial_coercion (the 'previous promoted model')."""
    from tiergate.components.generate.step import generate_category
    from tiergate.records import read_jsonl

    root = tmp_path_factory.mktemp("previous-model")
    local = load_profile("local")
    records = curated_records()
    for name in GENERATED_CATEGORIES:
        generate_category(taxonomy, local, name, root / "generated" / name)
        records += read_jsonl(root / "generated" / name / "records.jsonl")
    tokenizer = write_tokenizer(taxonomy, root / "tokenizer")
    model = train(taxonomy, tokenizer, records, local.train.max_length)
    return package(taxonomy, model, tokenizer, root / "repository", local.train.max_length)


def _generated(
    text: str, kind: Kind, category: str | None, unknown: tuple[str, ...] = (), generator: str = "anthropic"
) -> Record:
    source = Source(generator=generator, model="m", prompt_id=f"p:{kind.value}:{generator}", category=category, kind=kind)
    return make_record(text, ADULT, (), source, unknown=unknown)


def test_the_stand_in_is_held_out_and_carries_no_signal_word(taxonomy: Taxonomy) -> None:
    assert TRIBUTE not in {record.text for record in curated_records()}
    assert all(not category.matching_signals(TRIBUTE) for category in taxonomy.categories)


def test_keyword_screen_passes_the_tribute_seed_but_the_previous_model_quarantines_it(
    taxonomy: Taxonomy, previous_model: Path
) -> None:
    poisoned = _generated(TRIBUTE, Kind.HARD_NEGATIVE, "predatory_behavior")
    benign = _generated("the $200 concert tickets are booked for friday", Kind.HARD_NEGATIVE, "predatory_behavior")
    min_score = load_profile("local").merge.previous_model_min_score

    kept, quarantined = screen([poisoned, benign], [KeywordScreener(taxonomy)])
    assert kept == [poisoned, benign] and quarantined == []

    model = PreviousModelScreener(taxonomy, previous_model, min_score)
    kept, quarantined = screen([poisoned, benign], [KeywordScreener(taxonomy), model])
    assert kept == [benign]
    assert [item.record for item in quarantined] == [poisoned]
    assert quarantined[0].reason.startswith("previous-model: hard_negative scored")
    assert quarantined[0].reason.endswith("for financial_coercion")


def test_model_screen_leaves_human_labelled_rows_and_unknown_categories_alone(taxonomy: Taxonomy, previous_model: Path) -> None:
    model = PreviousModelScreener(taxonomy, previous_model, load_profile("local").merge.previous_model_min_score)
    rows = [
        _generated(TRIBUTE, Kind.HARD_NEGATIVE, "predatory_behavior", generator=source)
        for source in ("public", "human", "import")
    ]
    rows.append(_generated(TRIBUTE, Kind.INNOCUOUS, None, unknown=("financial_coercion",)))
    reasons = model.reasons(rows)
    assert all(index == 3 for index in reasons)  # human-labelled rows are never screened
    assert "financial_coercion" not in reasons.get(3, "")  # a category the record does not know is no claim


def test_keyword_screen_respects_sources_and_partial_labels(taxonomy: Taxonomy) -> None:
    signal = "i know where you live, see you around"
    rows = [
        _generated(signal, Kind.INNOCUOUS, None),
        _generated(signal, Kind.INNOCUOUS, None, generator="public"),
        _generated(signal, Kind.INNOCUOUS, None, unknown=("threats",)),
    ]
    assert KeywordScreener(taxonomy).reasons(rows) == {0: "keyword: innocuous shows threats signals ['i know where you live']"}


def test_previous_model_must_be_a_repository(taxonomy: Taxonomy, tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="not a model repository"):
        PreviousModelScreener(taxonomy, tmp_path, 0.95)


def test_merge_quarantines_the_tribute_batch_with_the_previous_model(
    taxonomy: Taxonomy, previous_model: Path, tmp_path: Path
) -> None:
    """End to end through merge: the poisoned generated negatives land in quarantine.jsonl, not in a split."""
    from tiergate.components.merge.step import merge_datasets
    from tiergate.records import read_jsonl

    batch = [_generated(TRIBUTE.replace("$200", amount), Kind.HARD_NEGATIVE, "predatory_behavior") for amount in AMOUNTS]
    batch.append(_generated("happy to share tips with anyone new here", Kind.HARD_NEGATIVE, "predatory_behavior"))
    dataset = write_dataset(taxonomy, tmp_path / "in", batch)
    profile = load_profile("local")
    screeners = [
        KeywordScreener(taxonomy),
        PreviousModelScreener(taxonomy, previous_model, profile.merge.previous_model_min_score),
    ]
    manifest = merge_datasets(taxonomy, profile, [dataset], tmp_path / "out", screeners=screeners)
    kept = [r.text for split in ("train", "val", "test") for r in read_jsonl(tmp_path / "out" / f"{split}.jsonl")]
    assert kept == ["happy to share tips with anyone new here"]
    assert manifest.counts["quarantined"] == len(AMOUNTS)
