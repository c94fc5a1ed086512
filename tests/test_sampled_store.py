"""Discovery extracts only the tokens it samples: the same sample and the same concepts as the
store of every word, on the shared UD English EWT, with sentences over the model's limit skipped."""

import json

import numpy as np
import pytest
from conftest import EWT
from helpers import compose_cfg

import concepts.discovery.stage as discover_mod
import concepts.extraction.stage as extract_mod
from concepts.core.config import validate
from concepts.core.errors import UserError
from concepts.discovery.config import DiscoverConfig
from concepts.extraction.store import ActivationStore


def ewt(model, ws, *extra):
    # dev split, 400 sentences; max_length 64 makes the longest sentences skip (counted, not stored)
    return ["model=hf", f"model.name_or_path={model}", "model.name=tiny", "corpus=ewt", f"corpus.path={EWT}",
            "corpus.splits=[dev]", "corpus.max_sentences=400", f"paths.workspace={ws}", "extraction.progress=false",
            "extraction.max_length=64", "extraction.shard_sentences=150", "sampling.min_count=3",
            "sampling.max_per_type=5", "discovery.k=40", "discovery.tag_sets=[upos,xpos,casing,suffix]", *extra]


def _vector_bytes(store):
    return sum(f.stat().st_size for f in (store.path / "shards").rglob("layer_*.npy"))


@pytest.mark.parametrize("arch,long_sentences,stream", [("bert", "skip", False), ("bert", "window", False),
                                                        ("gpt2", "skip", False), ("bert", "skip", True)])
def test_sampled_extraction_gives_the_concepts_of_the_full_store(tiny_models, tmp_path, arch, long_sentences, stream):
    mode = f"extraction.long_sentences={long_sentences}"
    if stream:  # the sampled path over a streamed corpus (re-read per pass, never held)
        mode = [mode, "corpus.stream_above=100"]
    mode = mode if isinstance(mode, list) else [mode]
    model = tiny_models[arch]
    sampled = discover_mod.run(compose_cfg("discover", ewt(model, tmp_path / "a", *mode)))
    full = discover_mod.run(compose_cfg("discover", ewt(model, tmp_path / "b", *mode, "discovery.extract=all")))
    s_store, f_store = ActivationStore(sampled.store), ActivationStore(full.store)
    assert s_store.path.name.startswith("sampled-") and f_store.path.name == "activations"
    assert not list((tmp_path / "a").rglob("activations"))  # no store of every word was made
    # its sentences, written from the word-count pass: the same file as the full store's
    assert (s_store.path / "sentences.jsonl").read_bytes() == (f_store.path / "sentences.jsonl").read_bytes()
    counts = f_store.manifest["counts"]
    if long_sentences == "skip":  # the skip rule is exercised
        assert counts["sentences_skipped_subword_limit"] > 0
    else:  # long sentences are windowed (a sentence with a word longer than a window is still skipped)
        assert counts["sentences_windowed"] > 0
    # the sample: the same full-store rows, the same tokens, the same vectors
    rows = np.load(full.path / "sample.npy")
    assert np.array_equal(s_store.sample_rows, rows) and len(s_store.tokens()) == len(rows)
    cols = ["sentence", "position", "word", "upos", "xpos"]
    assert s_store.tokens()[cols].equals(f_store.tokens().iloc[rows][cols].reset_index(drop=True))
    for layer in (0, 2):
        assert np.array_equal(np.asarray(s_store.layer(layer)), f_store.layer(layer)[rows])
    # the same concepts folder name (identity) and byte-identical records and alignment
    assert sampled.path.name == full.path.name
    for layer in range(s_store.n_layers):
        name = f"layer_{layer:02d}/concepts-K40.jsonl"
        assert (sampled.path / name).read_bytes() == (full.path / name).read_bytes()
    assert sampled.alignment.equals(full.alignment)
    assert _vector_bytes(s_store) < _vector_bytes(f_store) / 2
    # a resumed sampled run reuses the store; once a full store exists, discovery uses it instead
    cfg = validate(compose_cfg("discover", ewt(model, tmp_path / "a", *mode)), DiscoverConfig)
    again = extract_mod.run(cfg, sample=cfg.sampling)
    assert again.store == s_store.path and again.shards_written == 0
    man = json.loads((sampled.path / "manifest.json").read_text())
    assert man["inputs"]["store_source_fingerprint"] == f_store.fingerprint


def test_a_complete_full_store_is_used_and_a_too_small_sample_is_refused_before_extracting(tiny_models, tmp_path):
    full = extract_mod.run(validate(compose_cfg("discover", ewt(tiny_models["bert"], tmp_path)), DiscoverConfig))
    res = discover_mod.run(compose_cfg("discover", ewt(tiny_models["bert"], tmp_path, "discovery.layers=[1]")))
    assert res.store == full.store and not list(tmp_path.rglob("sampled-*"))
    with pytest.raises(UserError, match="discovery.k=5000"):
        discover_mod.run(compose_cfg("discover", ewt(tiny_models["bert"], tmp_path / "c", "discovery.k=5000")))
    assert not list((tmp_path / "c").rglob("shard-*"))
