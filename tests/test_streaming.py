"""Streamed corpora (more than corpus.stream_above sentences): the same sentences, fingerprint,
counts and store as a corpus held in memory, with memory bounded by a pass, not the corpus."""

import json
import tracemalloc

import numpy as np
import pytest
from conftest import EWT
from helpers import compose_cfg

import concepts.extraction.stage as extract_mod
from concepts.corpus import load_corpus, loading
from concepts.corpus.config import CorpusConfig
from concepts.extraction.store import ActivationStore


def _as_json(corpus):
    return [json.dumps(s.to_json(), sort_keys=True) for s in corpus.iter_sentences()]


@pytest.mark.parametrize("cap", [None, 300])
@pytest.mark.parametrize("above", [0, 50])
def test_a_streamed_corpus_reads_as_the_held_one(cap, above, monkeypatch):
    # EWT dev, length filter on (some sentences skipped), with and without the seeded sentence cap;
    # streamed from the first sentence, or after 50 were held
    kw = dict(path=str(EWT), splits=["dev"], max_sentence_length=30, max_sentences=cap, seed=2)
    held = load_corpus(CorpusConfig(**kw))
    passes = []
    real_reader = loading.read_conllu
    monkeypatch.setattr(loading, "read_conllu", lambda *a, **k: passes.append(1) or real_reader(*a, **k))
    streamed = load_corpus(CorpusConfig(**kw, stream_above=above))
    # without a cap, one pass counts and fingerprints it; a cap's draw needs a second
    assert len(passes) == (1 if cap is None else 2)
    assert held.held is not None and streamed.held is None
    assert streamed.fingerprint == held.fingerprint and streamed.stats == held.stats
    assert streamed.n_sentences == held.n_sentences and np.array_equal(streamed.lengths, held.lengths)
    assert _as_json(streamed) == _as_json(held)  # a second pass reads the same again
    assert _as_json(streamed) == _as_json(held)
    for step in (7, 100):
        for wanted in (None, {0, 2}):
            a = [(k, [s.index for s in ss]) for k, ss in held.shards(step, wanted)]
            b = [(k, [s.index for s in ss]) for k, ss in streamed.shards(step, wanted)]
            assert a == b and all(len(ss) <= step for _, ss in b)


def test_streaming_keeps_memory_to_a_pass(tmp_path):
    p = tmp_path / "big.txt"
    rng = np.random.default_rng(0)
    p.write_text("".join(" ".join(f"w{x}" for x in rng.integers(0, 5000, 20)) + "\n" for _ in range(20000)))
    peaks = {}
    for name, above in (("held", 10**9), ("streamed", 100)):
        tracemalloc.start()
        c = load_corpus(CorpusConfig(name="big", format="text", path=str(p), splits=[], stream_above=above))
        for _k, shard in c.shards(1000):  # what extraction does
            assert len(shard) <= 1000
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del c
    assert peaks["streamed"] < peaks["held"] / 5, peaks


def test_a_streamed_corpus_makes_the_same_store(tiny_models, tmp_path):
    def run(ws, *extra):
        return extract_mod.run(compose_cfg("extract", [
            "model=hf", f"model.name_or_path={tiny_models['bert']}", "model.name=tiny", f"corpus.path={EWT}",
            "corpus.splits=[dev]", "corpus.max_sentences=120", f"paths.workspace={ws}", "extraction.progress=false",
            "extraction.shard_sentences=50", "extraction.max_length=48", *extra]))

    held = ActivationStore(run(tmp_path / "a").store)
    streamed = ActivationStore(run(tmp_path / "b", "corpus.stream_above=10").store)
    assert held.path.relative_to(tmp_path / "a") == streamed.path.relative_to(tmp_path / "b")  # same identity
    assert (held.path / "sentences.jsonl").read_bytes() == (streamed.path / "sentences.jsonl").read_bytes()
    assert held.tokens().equals(streamed.tokens())
    for layer in range(held.n_layers):
        np.testing.assert_array_equal(np.asarray(held.layer(layer)), np.asarray(streamed.layer(layer)))


def test_a_corpus_loaded_again_unchanged_is_not_read_again(tmp_path, monkeypatch):
    p = tmp_path / "c.txt"
    p.write_text("a b c\nd e\n")
    passes = []
    real_reader = loading.read_plain_text
    monkeypatch.setattr(loading, "read_plain_text", lambda *a, **k: passes.append(1) or real_reader(*a, **k))
    cfg = CorpusConfig(name="c", format="text", path=str(p), splits=[])
    first = load_corpus(cfg)
    assert load_corpus(cfg) is first and len(passes) == 1  # same options, same file: kept
    assert load_corpus(CorpusConfig(name="c", format="text", path=str(p), splits=[], max_sentence_length=2)).n_sentences == 1
    n = len(passes)
    p.write_text("a b c\nd e\nf g h i\n")  # the file changed: read again
    again = load_corpus(cfg)
    assert len(passes) > n and again.n_sentences == 3 and again.fingerprint != first.fingerprint
