"""Shared fixtures: tiny random BERT, RoBERTa-style and GPT-2 models saved with
`save_pretrained` into a temp folder, and small corpora written in the formats we read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SHARED_EWT = REPO.parent / "shared" / "data" / "ud-english-ewt"  # the project's reference copy, beside the checkout
PACKAGED_EWT = REPO / "concepts" / "data" / "ud-english-ewt"  # the copy the package ships (xz)
EWT = Path(os.environ.get("CONCEPTS_EWT") or (SHARED_EWT if SHARED_EWT.exists() else PACKAGED_EWT))

SENTENCES = [
    "The quick brown fox jumps over the lazy dog .",
    "Researchers interpret neural language models layer by layer .",
    "A xylophone played unbelievably melodious tunes yesterday !",
    "Dogs bark .",
    "She sells seashells by the seashore , doesn't she ?",
    "Tokenization splits uncommon words into several subword pieces .",
    "Paris is the capital of France and Berlin is the capital of Germany .",
    "Numbers like 1999 and 3.14 appear in text too .",
]

BPE_TRAIN = [s.lower() for s in SENTENCES] + SENTENCES


def _bert(d: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted({w.lower() for s in SENTENCES for w in s.split()} - {"xylophone", "unbelievably", "tokenization", "seashells"})
    pieces = ["x", "##y", "##lo", "##phone", "un", "##believ", "##ably", "token", "##ization", "sea", "##shell", "##s"]
    chars = sorted({c for s in SENTENCES for c in s.lower() if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars] + words + pieces
    vocab = list(dict.fromkeys(vocab))
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(vocab=str(d / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, max_position_embeddings=64)
    BertModel(cfg).eval().save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _bpe(d: Path):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(BPE_TRAIN, vocab_size=320, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<|endoftext|>"])
    bpe.save_model(str(d))
    return str(d / "vocab.json"), str(d / "merges.txt")


def _roberta(d: Path) -> Path:
    import torch
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    vocab, merges = _bpe(d)
    tok = RobertaTokenizer(vocab=vocab, merges=merges)
    torch.manual_seed(1)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=66, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    RobertaModel(cfg).eval().save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _gpt2(d: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2Model, GPT2Tokenizer

    vocab, merges = _bpe(d)
    tok = GPT2Tokenizer(vocab=vocab, merges=merges)
    torch.manual_seed(2)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    GPT2Model(cfg).eval().save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, build in (("bert", _bert), ("roberta", _roberta), ("gpt2", _gpt2)):
        d = tmp_path_factory.mktemp(f"tiny-{name}")
        out[name] = build(d)
    return out


@pytest.fixture
def text_corpus(tmp_path) -> Path:
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(SENTENCES) + "\n")
    return p


def conllu_block(words: list[str], upos: list[str], sent_id: str) -> str:
    lines = [f"# sent_id = {sent_id}", f"# text = {' '.join(words)}"]
    for i, (w, u) in enumerate(zip(words, upos), start=1):
        lines.append(f"{i}\t{w}\t{w.lower()}\t{u}\t{u}-X\t_\t{0 if i == 1 else 1}\t{'root' if i == 1 else 'dep'}\t_\t_")
    return "\n".join(lines) + "\n\n"


LEXICON = {
    "DET": ["the", "a", "every", "this"],
    "NOUN": ["dog", "cat", "model", "layer", "word", "fox"],
    "VERB": ["runs", "sees", "learns", "jumps", "finds"],
    "ADV": ["quickly", "often", "rarely"],
    "PUNCT": [".", "!"],
}


def write_tagged_corpus(p: Path, n: int = 60) -> Path:
    """A CoNLL-U file of `n` generated sentences `DET NOUN VERB DET NOUN ADV PUNCT` (UPOS tags)."""
    import random

    rng = random.Random(0)
    pattern = ["DET", "NOUN", "VERB", "DET", "NOUN", "ADV", "PUNCT"]
    p.write_text("".join(conllu_block([rng.choice(LEXICON[t]) for t in pattern], pattern, f"s{i}") for i in range(n)))
    return p


@pytest.fixture
def tagged_corpus(tmp_path) -> Path:
    """A CoNLL-U file of 60 generated sentences `DET NOUN VERB DET NOUN ADV PUNCT` (UPOS tags)."""
    return write_tagged_corpus(tmp_path / "tagged.conllu")


@pytest.fixture(autouse=True)
def _fresh_corpus_cache():
    """Each test loads its corpora itself (`load_corpus` keeps the last one a process loaded)."""
    from concepts.corpus import loading

    loading._LAST.clear()
    yield
    loading._LAST.clear()
