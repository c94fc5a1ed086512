import json
import shutil

import numpy as np
import pytest
from conftest import SENTENCES
from helpers import compose_cfg, extract_overrides, reference_vectors

import concepts.extraction.stage as extract_mod
from concepts.core.errors import UserError
from concepts.extraction.config import ModelConfig
from concepts.extraction.models import load_model
from concepts.extraction.store import ActivationStore


def _run(model_dir, corpus, ws, *extra):
    return extract_mod.run(compose_cfg("extract", extract_overrides(model_dir, corpus, ws, *extra)))


def test_mean_aggregation_with_the_subword_count_given_by_hand():
    """`aggregate_words(..., n_subwords)` (the host's count, no device sync) against loops."""
    import torch

    from concepts.extraction.aggregate import aggregate_words

    g = torch.Generator().manual_seed(0)
    hidden = [torch.randn(3, 7, 5, generator=g) for _ in range(4)]  # L=4, B=3, T=7, H=5
    batch_idx = torch.tensor([0, 0, 1, 2, 2, 2])
    spans = torch.tensor([[1, 3], [3, 4], [1, 6], [1, 2], [2, 5], [5, 7]])
    want = torch.stack([torch.stack([h[b, s:e].mean(0) for b, (s, e) in zip(batch_idx.tolist(), spans.tolist())])
                        for h in hidden])
    given = aggregate_words(hidden, batch_idx, spans, "mean", int((spans[:, 1] - spans[:, 0]).sum()))
    torch.testing.assert_close(given, want)
    assert torch.equal(given, aggregate_words(hidden, batch_idx, spans, "mean"))


@pytest.mark.parametrize("arch", ["bert", "roberta", "gpt2"])
@pytest.mark.parametrize("how", ["first", "last", "mean"])
def test_aggregation_matches_hand_computation(tiny_models, text_corpus, tmp_path, arch, how):
    res = _run(tiny_models[arch], text_corpus, tmp_path, f"extraction.aggregation={how}", "extraction.batch_size=3")
    store = ActivationStore(res.store)
    lm = load_model(ModelConfig(name_or_path=str(tiny_models[arch])))
    assert store.n_layers == lm.model.config.num_hidden_layers + 1 == lm.n_layers
    tokens = store.tokens()
    assert len(tokens) == sum(len(s.split()) for s in SENTENCES)
    assert (tokens["n_subwords"] > 1).any()  # some words really are several subwords
    for sid, text in enumerate(SENTENCES):
        words = text.split()
        rows = store.rows(sentence=sid)
        assert tokens.loc[rows, "word"].tolist() == words
        ref = reference_vectors(lm, words, how)
        for layer in range(store.n_layers):
            np.testing.assert_allclose(store.layer(layer)[rows], ref[layer], atol=1e-4, rtol=1e-4)


def test_batched_equals_one_at_a_time(tiny_models, text_corpus, tmp_path):
    a = ActivationStore(_run(tiny_models["bert"], text_corpus, tmp_path / "a", "extraction.batch_size=1").store)
    b = ActivationStore(_run(tiny_models["bert"], text_corpus, tmp_path / "b", "extraction.batch_size=64").store)
    for layer in range(a.n_layers):
        np.testing.assert_allclose(np.asarray(a.layer(layer)), np.asarray(b.layer(layer)), atol=1e-5)


def test_word_that_tokenizes_to_nothing_is_kept(tiny_models, tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("the dog \u200b barks\n")  # a zero-width space is a word with no subword
    store = ActivationStore(_run(tiny_models["bert"], p, tmp_path).store)
    t = store.tokens()
    assert t["word"].tolist() == ["the", "dog", "\u200b", "barks"]
    assert t["replaced"].tolist() == [False, False, True, False]
    assert store.manifest["counts"]["words_replaced_empty"] == 1
    assert np.isfinite(np.asarray(store.layer(1))).all()


def test_long_sentences_skip_or_window(tiny_models, tmp_path):
    p = tmp_path / "c.txt"
    short = "the dog barks ."
    long_ = " ".join(["the quick brown fox jumps over the lazy dog ."] * 3)  # > 20 subwords
    p.write_text(f"{short}\n{long_}\n{short}\n")
    skip = ActivationStore(_run(tiny_models["bert"], p, tmp_path / "s", "extraction.max_length=20").store)
    assert skip.manifest["counts"]["sentences_skipped_subword_limit"] == 1
    assert skip.manifest["counts"]["sentences_skipped_word_limit"] == 0  # its own counter
    assert sorted(set(skip.tokens()["sentence"])) == [0, 2]
    # one sentence a shard: the shard of the long sentence is written empty and the store completes
    one = ActivationStore(_run(tiny_models["bert"], p, tmp_path / "o", "extraction.max_length=20",
                               "extraction.shard_sentences=1").store)
    assert one.manifest["complete"] and sorted(set(one.tokens()["sentence"])) == [0, 2]
    assert not list(one.path.rglob("*.lock"))  # shard locks are removed once the store is complete
    np.testing.assert_allclose(np.asarray(one.layer(2)), np.asarray(skip.layer(2)), atol=1e-6)
    win = ActivationStore(_run(tiny_models["bert"], p, tmp_path / "w", "extraction.max_length=20",
                               "extraction.long_sentences=window").store)
    assert win.manifest["counts"]["sentences_windowed"] == 1
    t = win.tokens()
    assert t.loc[win.rows(sentence=1), "word"].tolist() == long_.split()
    for layer in range(win.n_layers):  # sentences that fit are unaffected
        np.testing.assert_allclose(win.layer(layer)[win.rows(sentence=[0, 2])], np.asarray(skip.layer(layer)), atol=1e-5)
    # every word of the long sentence equals its vector computed alone on its most central window
    from concepts.extraction.subwords import _windows

    lm = load_model(ModelConfig(name_or_path=str(tiny_models["bert"])))
    words = long_.split()
    rows = win.rows(sentence=1)
    windows = _windows(t.loc[rows, "n_subwords"].to_numpy(), 20 - 2)
    assert len(windows) >= 3 and all(a < b for a, b in windows)
    refs = [reference_vectors(lm, words[a:b], "last") for a, b in windows]
    for i, row in enumerate(rows):
        holding = [k for k, (a, b) in enumerate(windows) if a <= i < b]
        best = max(holding, key=lambda k: min(i - windows[k][0], windows[k][1] - 1 - i))
        np.testing.assert_allclose(win.layer(2)[row], refs[best][2][i - windows[best][0]], atol=1e-4)


def test_resume_after_interruption_gives_same_store(tiny_models, text_corpus, tmp_path, monkeypatch):
    full = ActivationStore(_run(tiny_models["gpt2"], text_corpus, tmp_path / "full", "extraction.shard_sentences=2").store)
    real = extract_mod._write_shard
    calls = {"n": 0}

    def dying(*a, **k):
        if calls["n"] == 2:
            (k.get("final") or a[4]).with_name("shard-00002.tmp").mkdir(parents=True)  # half-written leftover
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(extract_mod, "_write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_models["gpt2"], text_corpus, tmp_path / "part", "extraction.shard_sentences=2")
    path = next((tmp_path / "part").glob("*/*/activations"))
    with pytest.raises(UserError, match=r"incomplete \(2 of 4 shards\)"):
        ActivationStore(path)
    monkeypatch.setattr(extract_mod, "_write_shard", real)
    res = _run(tiny_models["gpt2"], text_corpus, tmp_path / "part", "extraction.shard_sentences=2")
    assert res.complete and res.shards_written == 2
    resumed = ActivationStore(res.store)
    assert not list((res.store / "shards").glob("*.tmp"))
    for layer in range(full.n_layers):
        np.testing.assert_array_equal(np.asarray(full.layer(layer)), np.asarray(resumed.layer(layer)))
    assert full.tokens().equals(resumed.tokens())
    # the same config on complete output does no work: not even the model is loaded
    monkeypatch.setattr(extract_mod, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    again = _run(tiny_models["gpt2"], text_corpus, tmp_path / "part", "extraction.shard_sentences=2")
    assert again.complete and again.shards_written == 0


def test_jobs_split_the_shards(tiny_models, text_corpus, tmp_path):
    one = ActivationStore(_run(tiny_models["roberta"], text_corpus, tmp_path / "one", "extraction.shard_sentences=3").store)
    r0 = _run(tiny_models["roberta"], text_corpus, tmp_path / "two", "extraction.shard_sentences=3",
              "corpus.shard=0", "corpus.num_shards=2")
    assert not r0.complete and r0.shards_written == 2
    r1 = _run(tiny_models["roberta"], text_corpus, tmp_path / "two", "extraction.shard_sentences=3",
              "corpus.shard=1", "corpus.num_shards=2")
    assert r1.complete and r1.store == r0.store
    two = ActivationStore(r1.store)
    np.testing.assert_array_equal(np.asarray(one.layer(3)), np.asarray(two.layer(3)))
    assert two.manifest["counts"]["words"] == len(two.tokens())


def test_store_reader_api(tiny_models, text_corpus, tmp_path):
    store = ActivationStore(_run(tiny_models["bert"], text_corpus, tmp_path, "extraction.shard_sentences=3").store)
    arr = store.layer(1)
    dense = np.asarray(arr)
    assert arr.shape == dense.shape == (len(store.tokens()), 32)
    idx = np.array([0, 5, len(arr) - 1, 20, 21])
    np.testing.assert_array_equal(arr[idx], dense[idx])
    np.testing.assert_array_equal(arr[3:30:4], dense[3:30:4])
    np.testing.assert_array_equal(arr[-1], dense[-1])
    assert len(store.sentences()) == len(SENTENCES)
    words = store.sentence_words()
    assert words == [s.words for s in store.sentences()] == [s.split() for s in SENTENCES]
    same = [w for ws in words for w in ws if w == "layer"]
    assert len(same) == 2 and same[0] is same[1]  # one string per word type
    with pytest.raises(UserError, match="layer 9 does not exist"):
        store.layer(9)
    with pytest.raises(UserError, match="no column 'upos'"):
        store.rows(upos="NOUN")
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["complete"] and manifest["versions"]["torch"]


def test_default_embedded_model_on_ewt(tmp_path):
    from conftest import EWT

    if not EWT.exists():
        pytest.skip(f"UD English EWT not found at {EWT}")
    cfg = compose_cfg("extract", [f"paths.workspace={tmp_path}", "corpus.max_sentences=6", "extraction.progress=false",
                                  f"corpus.path={EWT}", "extraction.device=cpu", "extraction.store_dtype=float16"])
    store = ActivationStore(extract_mod.run(cfg).store)
    assert store.n_layers == 7 and store.hidden_size == 384
    t = store.tokens()
    assert {"upos", "xpos", "lemma", "deprel"} <= set(t.columns)
    assert store.layer(6).dtype == np.float16
    assert store.layer(0).shape == (len(t), 384)


def test_store_folder_depends_on_content_settings(tiny_models, text_corpus, tmp_path):
    a = _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.aggregation=first").store
    b = _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.aggregation=mean").store
    c = _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.aggregation=mean", "extraction.batch_size=2").store
    assert a != b and b == c
    shutil.rmtree(a)


def test_concurrent_jobs_never_write_the_same_shard(tiny_models, text_corpus, tmp_path, monkeypatch):
    import fcntl
    import threading

    cfg_args = ("extraction.shard_sentences=2",)
    order = []
    real = extract_mod._write_shard

    def recording(*a, **k):
        order.append(a[4].name)
        return real(*a, **k)

    # another "job" holds shard 1 for a moment: it is done last, after waiting for the lock
    first = _run(tiny_models["bert"], text_corpus, tmp_path / "probe", *cfg_args)  # learn the store path
    store = tmp_path / "ws" / first.store.relative_to(tmp_path / "probe")
    (store / "shards").mkdir(parents=True)
    held = open(store / "shards" / "shard-00001.lock", "a")
    fcntl.flock(held, fcntl.LOCK_EX)
    threading.Timer(1.5, held.close).start()
    monkeypatch.setattr(extract_mod, "_write_shard", recording)
    res = _run(tiny_models["bert"], text_corpus, tmp_path / "ws", *cfg_args)
    assert res.store == store and res.complete
    assert order == ["shard-00000", "shard-00002", "shard-00003", "shard-00001"]
    ref = ActivationStore(first.store)
    np.testing.assert_array_equal(np.asarray(ActivationStore(store).layer(1)), np.asarray(ref.layer(1)))


def test_tokenizing_ahead_gives_the_same_store_and_tokenizes_each_shard_once(tiny_models, text_corpus, tmp_path, monkeypatch):
    """extraction.tokenize_ahead (on by default on GPUs): each next shard is encoded on a thread
    during the forward pass of the one before; the store is the same as without."""
    import threading

    real = extract_mod.encode_shard
    threads = []

    def counting(*a, **k):
        threads.append(threading.current_thread().name)
        return real(*a, **k)

    monkeypatch.setattr(extract_mod, "encode_shard", counting)
    plain = ActivationStore(_run(tiny_models["bert"], text_corpus, tmp_path / "a", "extraction.shard_sentences=2",
                                 "extraction.tokenize_ahead=false").store)
    assert len(threads) == 4 and all(t == "MainThread" for t in threads)
    threads.clear()
    ahead = ActivationStore(_run(tiny_models["bert"], text_corpus, tmp_path / "b", "extraction.shard_sentences=2",
                                 "extraction.tokenize_ahead=true").store)
    assert len(threads) == 4 and all(t.startswith("tokenize-ahead") for t in threads)  # once each, off the main thread
    for layer in range(plain.n_layers):
        np.testing.assert_array_equal(np.asarray(plain.layer(layer)), np.asarray(ahead.layer(layer)))
    assert plain.tokens().equals(ahead.tokens())


def test_a_float16_store_is_the_float32_store_rounded(tiny_models, text_corpus, tmp_path):
    f32 = ActivationStore(_run(tiny_models["roberta"], text_corpus, tmp_path / "a").store)
    f16 = ActivationStore(_run(tiny_models["roberta"], text_corpus, tmp_path / "b", "extraction.store_dtype=float16").store)
    for layer in range(f32.n_layers):
        half = np.asarray(f16.layer(layer))
        assert half.dtype == np.float16
        np.testing.assert_array_equal(half, np.asarray(f32.layer(layer)).astype(np.float16))  # numpy's rounding


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
@pytest.mark.parametrize("mode", ["skip", "window"])
def test_the_count_pass_finds_the_sentences_encode_shard_skips(tiny_models, arch, mode):
    """`skipped_sentences` (subword counts, `encode_shard` only near the limit) skips exactly what
    `encode_shard` does: long sentences, long words, and words that tokenize to nothing (replaced
    by one token each, which can push a sentence over the limit)."""
    from concepts.corpus import Sentence
    from concepts.extraction.subwords import encode_shard, skipped_sentences

    tok = load_model(ModelConfig(name_or_path=str(tiny_models[arch])), "cpu").tokenizer
    rng = np.random.default_rng(0)
    vocab = ["the", "cat", "sat", "on", "a", "mat", "unbelievably", "\u200b", "antidisestablishmentarianism", "x"]
    sents = []
    for i in range(300):
        words = list(rng.choice(vocab, size=int(rng.integers(1, 40))))
        if i % 7 == 0:
            words = ["\u200b"] * int(rng.integers(5, 30)) + words  # empty words, each replaced by one token
        sents.append(Sentence(words))
    n_skipped = []
    for max_length in (6, 16, 24, 48):
        ref = encode_shard(tok, sents, max_length, tok.num_special_tokens_to_add(), mode).skipped
        got = skipped_sentences(tok, sents, max_length, tok.num_special_tokens_to_add(), mode)
        assert got == ref
        n_skipped.append(len(ref))
    assert 0 < max(n_skipped) < len(sents)  # (window: a word longer than a window of 6)
    assert n_skipped[-1] < n_skipped[0]


def test_cuda_extraction_leaves_out_cudnn_attention_unless_asked():
    """On CUDA the forward pass runs without cuDNN's attention (a plan per input shape); the other
    kernels stay allowed, and the flags are restored after. On a CPU nothing changes."""
    import torch

    from concepts.extraction.extractor import attention_context

    be = torch.backends.cuda
    before = (be.cudnn_sdp_enabled(), be.flash_sdp_enabled(), be.mem_efficient_sdp_enabled(), be.math_sdp_enabled())
    assert before[0]  # PyTorch's default: allowed
    with attention_context(torch.device("cuda")):
        assert not be.cudnn_sdp_enabled()
        assert be.flash_sdp_enabled() and be.mem_efficient_sdp_enabled() and be.math_sdp_enabled()
    assert (be.cudnn_sdp_enabled(), be.flash_sdp_enabled(), be.mem_efficient_sdp_enabled(), be.math_sdp_enabled()) == before
    for device, allow in ((torch.device("cuda"), True), (torch.device("cpu"), False)):
        with attention_context(device, cudnn_attention=allow):
            assert be.cudnn_sdp_enabled()
