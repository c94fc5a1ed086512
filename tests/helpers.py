"""Test helpers: compose the real Hydra configs, and a hand reference for word vectors."""

from __future__ import annotations

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from concepts.cli import CONF_DIR


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


def reference_vectors(lm, words: list[str], how: str) -> np.ndarray:
    """One sentence through the model alone, aggregated by hand: `[L, n_words, H]`."""
    enc = lm.tokenizer([words], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hs = lm.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True).hidden_states
    wid = enc.word_ids(0)
    out = []
    for h in hs:
        h = h[0]
        vecs = []
        for w in range(len(words)):
            pos = [i for i, x in enumerate(wid) if x == w]
            sel = {"first": pos[:1], "last": pos[-1:], "mean": pos}[how]
            vecs.append(h[sel].mean(0))
        out.append(torch.stack(vecs))
    return torch.stack(out).numpy()
