"""Test helpers: compose the real Hydra configs, and a hand reference for word vectors."""

from __future__ import annotations

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from concepts.core.cli import CONF_DIR


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def extract_overrides(model_dir, corpus_path, workspace, *extra) -> list[str]:
    return [
        "model=hf", f"model.name_or_path={model_dir}", "model.name=tiny",
        "corpus=text", f"corpus.path={corpus_path}", "corpus.max_sentence_length=null",
        f"paths.workspace={workspace}", "extraction.progress=false", "extraction.device=cpu", *extra,
    ]


def tiny_pipeline(tiny_models, corpus, ws, *extra) -> list[str]:
    """Pipeline overrides for the tiny BERT on a small tagged corpus (seconds per stage)."""
    return ["model=hf", f"model.name_or_path={tiny_models['bert']}", "model.name=tiny", "corpus=ewt",
            f"corpus.path={corpus}", "corpus.name=tagged", "corpus.splits=[train]", f"paths.workspace={ws}",
            "extraction.progress=false", "sampling.min_count=1", "sampling.max_per_type=20", "discovery.k=12",
            "probing.min_examples=3", "neurons.ks=[2,8]", "neurons.max_tokens=1000", "pipeline.concept_top=4",
            "ranking.epochs=3", *extra]


def reference_vectors(lm, words: list[str], how: str, input: str = "text") -> np.ndarray:
    """One sentence through the model alone, aggregated by hand: `[L, n_words, H]`. `text`: the
    words joined by spaces, each word taking the subwords whose characters (trimmed of spaces)
    overlap its own, a lone space marker going to the next word; `words`: pre-split, by `word_ids`."""
    if input == "words":
        enc = lm.tokenizer([words], is_split_into_words=True, return_tensors="pt")
        wid = enc.word_ids(0)
        pos_of = [[i for i, x in enumerate(wid) if x == w] for w in range(len(words))]
    else:
        text, starts, p = " ".join(words), [], 0
        for w in words:
            starts.append(p)
            p += len(w) + 1
        enc = lm.tokenizer(text, return_tensors="pt", return_offsets_mapping=True, return_special_tokens_mask=True)
        pos_of = [[] for _ in words]
        for i, ((a, b), special) in enumerate(zip(enc["offset_mapping"][0].tolist(), enc["special_tokens_mask"][0].tolist())):
            if special and a == b:
                continue
            piece = text[a:b]
            if piece.strip():
                a2 = a + len(piece) - len(piece.lstrip())
                b2 = b - (len(piece) - len(piece.rstrip()))
                for w, s in enumerate(starts):
                    if s < b2 and s + len(words[w]) > a2:
                        pos_of[w].append(i)
            else:
                at = b if b > a else a
                nxt = [w for w, s in enumerate(starts) if s + len(words[w]) > at]
                if nxt:
                    pos_of[nxt[0]].append(i)
        pos_of = [list(range(min(x), max(x) + 1)) for x in pos_of]
    with torch.no_grad():
        hs = lm.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True).hidden_states
    out = []
    for h in hs:
        h = h[0]
        vecs = []
        for pos in pos_of:
            sel = {"first": pos[:1], "last": pos[-1:], "mean": pos}[how]
            vecs.append(h[sel].mean(0))
        out.append(torch.stack(vecs))
    return torch.stack(out).numpy()
