"""A tiny BERT built from a config and a tokenizer built from a local vocabulary.

Tests use it instead of a real checkpoint: seconds to train, nothing
downloaded, same code paths (tokenizer, AutoModelForSequenceClassification, ONNX export).
"""

from __future__ import annotations

import re
from pathlib import Path

from tiergate.taxonomy import Taxonomy

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_vocabulary(taxonomy: Taxonomy) -> list[str]:
    """Specials, single characters (+ ## forms) and every word in the taxonomy's seeds and tags."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'$:;-_/()[]{}#@%&*+=\"")
    words: set[str] = set()
    for category in taxonomy.categories:
        texts = [*category.seeds.positive, *category.seeds.hard_negative, *category.signals]
        texts += [seed for seeds in category.overlap_seeds.values() for seed in seeds]
        for text in texts:
            words.update(re.findall(r"[a-z0-9']+", text.lower()))
    words.update(tag.lower() for tag in [*taxonomy.contexts.audiences, *taxonomy.contexts.surfaces])
    return SPECIALS + chars + [f"##{char}" for char in chars] + sorted(words - set(chars))


def build_tiny_base_model(taxonomy: Taxonomy, out_dir: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Write a tiny BERT (random weights, fixed seed) plus a fast tokenizer to `out_dir`."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer  # v5: BertTokenizer is the fast (tokenizers) one

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    words = tiny_vocabulary(taxonomy)
    # transformers 5's (fast) BertTokenizer takes the vocabulary itself: `vocab_file=` is ignored and
    # leaves a 5-token vocabulary that reads every word as [UNK] (every text then looks the same).
    tokenizer = BertTokenizer(vocab={word: index for index, word in enumerate(words)}, do_lower_case=True)
    if tokenizer.vocab_size != len(words):
        raise AssertionError(f"tiny tokenizer has {tokenizer.vocab_size} tokens, expected {len(words)}")
    tokenizer.save_pretrained(out_dir)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out_dir)
    return out_dir
