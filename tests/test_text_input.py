"""Sentences as running text: the corpus text (CoNLL-U `# text`, `SpaceAfter=No`, text lines),
the offsets rule on hand-made offsets, layer subsets, device maps and the needs estimate."""

import logging

import numpy as np
import pytest
import torch
from helpers import compose_cfg, extract_overrides

from concepts.core.errors import UserError
from concepts.corpus.conllu import ConlluStats, read_conllu
from concepts.corpus.plain_text import read_plain_text
from concepts.extraction.estimate import approx_parameters, estimate
from concepts.extraction.store import ActivationStore
from concepts.extraction.subwords import align_offsets


def _conllu(tmp_path, blocks: str):
    p = tmp_path / "t.conllu"
    p.write_text(blocks)
    return p


def _row(i, form, misc="_"):
    return f"{i}\t{form}\t_\tX\tX\t_\t0\troot\t_\t{misc}"


def test_conllu_text_from_space_after_and_multiword_tokens(tmp_path):
    blocks = "\n".join([
        "# text = He doesn't pay $2,000.",
        "1\tHe\t_\tX\tX\t_\t0\troot\t_\t_",
        "2-3\tdoesn't\t_\t_\t_\t_\t_\t_\t_\t_",
        _row(2, "does"), _row(3, "n't"), _row(4, "pay"), _row(5, "$", "SpaceAfter=No"),
        _row(6, "2,000", "SpaceAfter=No"), _row(7, "."), "",
        # a multi-word token whose words do not spell it (Spanish `del` = `de` + `el`), no # text
        "1\tVino\t_\tX\tX\t_\t0\troot\t_\t_",
        "2-3\tdel\t_\t_\t_\t_\t_\t_\t_\t_",
        _row(2, "de"), _row(3, "el"), _row(4, "norte", "SpacesAfter=\\s\\s"), _row(5, "hoy"), "",
        # a # text with other spacing than SpaceAfter says: the words are found in it
        "# text = a  b",
        _row(1, "a"), _row(2, "b"), "",
        # a # text that does not hold the words: the text built from them, counted
        "# text = something else",
        _row(1, "x"), _row(2, "y"), "", "",
    ])
    stats = ConlluStats()
    s1, s2, s3, s4 = read_conllu(_conllu(tmp_path, blocks), stats=stats)
    assert s1.text == "He doesn't pay $2,000."
    assert [s1.text[a:b] for a, b in s1.offsets] == ["He", "does", "n't", "pay", "$", "2,000", "."]
    assert s1.offsets[1] == (3, 7) and s1.offsets[2] == (7, 10)
    assert s2.text == "Vino del norte  hoy"
    assert s2.offsets[1] == s2.offsets[2] == (5, 8)  # both words take the whole token
    assert s3.text == "a  b" and s3.offsets == [(0, 1), (3, 4)]
    assert s4.text == "x y" and stats.text_mismatch == 1
    surface = list(read_conllu(_conllu(tmp_path, blocks), multiword="surface"))[0]
    assert surface.words[1] == "doesn't" and surface.offsets[1] == (3, 10) and surface.text == s1.text


def test_text_lines_are_the_running_text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("  Hello,  world (again).\n")
    (s,) = read_plain_text(p, "regex")
    assert s.text == "Hello,  world (again)." and s.words == ["Hello", ",", "world", "(", "again", ")", "."]
    assert [s.text[a:b] for a, b in s.offsets] == s.words
    assert s.to_json()["text"] == s.text


def _check(text, words, tokens, special=None):
    """Offsets of `tokens` (strings found in order in `text`, "" = zero width at the cursor)."""
    offs, pos = [], 0
    for t in tokens:
        if t == "":
            offs.append((pos, pos))
            continue
        at = text.index(t, pos)
        offs.append((at, at + len(t)))
        pos = at + len(t)
    spans, shared = align_offsets(text, words, offs, special if special is not None else [False] * len(offs))
    return spans.tolist(), shared.tolist()


def test_offsets_rule_by_hand():
    # "don't" read as don + 't while the words are do + n't: `don` belongs to both
    text = "I don't"
    words = [(0, 1), (2, 4), (4, 7)]
    assert _check(text, words, ["I", " don", "'t"]) == ([[0, 1], [1, 2], [1, 3]], [False, True, True])
    # a lone space marker goes to the next word; a trailing one to none; specials to none
    text = "a  bc"
    words = [(0, 1), (3, 5)]
    spans, shared = _check(text, words, ["", "a", " ", " b", "c", ""], [True, False, False, False, False, True])
    assert spans == [[1, 2], [2, 5]] and shared == [False, False]
    # a subword of no width inside a word stays with that word
    assert _check("xyz w", [(0, 3), (4, 5)], ["x", "", "yz", " w"])[0] == [[0, 3], [3, 4]]
    # a byte-level piece of one character split in two (an emoji): both pieces are the word's
    spans, _ = align_offsets("ok 🙂", [(0, 2), (3, 4)], [(0, 2), (2, 4), (3, 4)], [False] * 3)
    assert spans.tolist() == [[0, 1], [1, 3]]
    # characters of no word (a corpus text with more than the words): a subword there is no word's
    assert _check("a * b", [(0, 1), (4, 5)], ["a", " *", " b"])[0] == [[0, 1], [2, 3]]
    # a word no subword covers: -1 (the caller replaces it)
    assert _check("a b", [(0, 1), (2, 3)], ["a"])[0] == [[0, 1], [-1, -1]]


def test_text_input_with_a_corpus_text_matches_the_reference(tiny_models, tmp_path):
    """A CoNLL-U corpus with `SpaceAfter=No`: the model reads the text, and each word's vector is
    the hand reference's on that text (words located by characters, not by `word_ids`)."""
    from concepts.corpus import Sentence
    from latent_concepts.api import extract

    text = "He doesn't pay $2,000."
    words = ["He", "does", "n't", "pay", "$", "2,000", "."]
    offsets = [(0, 2), (3, 7), (7, 10), (11, 14), (15, 16), (16, 21), (21, 22)]
    for arch in ("roberta", "gpt2"):
        got = extract([Sentence(words, text=text, offsets=offsets)], model=str(tiny_models[arch]), aggregation="mean")
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tiny_models[arch])
        model = AutoModel.from_pretrained(tiny_models[arch]).eval()
        enc = tok(text, return_tensors="pt", return_offsets_mapping=True)
        pieces = [(a, b) for a, b in enc["offset_mapping"][0].tolist()]
        with torch.no_grad():
            hs = model(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states
        special = enc["special_tokens_mask"][0].tolist() if "special_tokens_mask" in enc else None
        owner: dict[int, list[int]] = {w: [] for w in range(len(words))}
        for i, (a, b) in enumerate(pieces):
            if (special and special[i]) or (a == b and i in (0, len(pieces) - 1) and tok.convert_ids_to_tokens(
                    int(enc["input_ids"][0][i])) in tok.all_special_tokens):
                continue
            piece = text[a:b]
            if piece.strip():  # overlapping words, by trimmed characters
                a2, b2 = a + len(piece) - len(piece.lstrip()), b - len(piece) + len(piece.rstrip())
                for w, (s, e) in enumerate(offsets):
                    if s < b2 and e > a2:
                        owner[w].append(i)
            else:  # a space marker: the next word
                owner[next(w for w, (s, e) in enumerate(offsets) if e > (b if b > a else a))].append(i)
        for w in range(len(words)):
            own = list(range(min(owner[w]), max(owner[w]) + 1))
            np.testing.assert_allclose(got.layers[:, w], torch.stack([h[0, own].mean(0) for h in hs]).numpy(), atol=1e-5,
                                       err_msg=f"{arch} {words[w]}")
        assert got.tokens["word"].tolist() == words


def test_layer_subset_store(tiny_models, text_corpus, tmp_path, caplog):
    from concepts.extraction.stage import run

    full = ActivationStore(run(compose_cfg("extract", extract_overrides(tiny_models["gpt2"], text_corpus, tmp_path / "a"))).store)
    with caplog.at_level(logging.INFO, logger="concepts.extraction.stage"):
        part = ActivationStore(run(compose_cfg("extract", extract_overrides(
            tiny_models["gpt2"], text_corpus, tmp_path / "b", "extraction.layers=[2,0]"))).store)
    assert "this extraction needs about" in caplog.text
    assert part.layers == [0, 2] and full.layers == list(range(full.n_layers))
    assert sorted(p.name for p in next((part.path / "shards").iterdir()).glob("layer_*.npy")) == ["layer_00.npy", "layer_02.npy"]
    for k in (0, 2):
        np.testing.assert_allclose(np.asarray(part.layer(k)), np.asarray(full.layer(k)), atol=1e-6)
    with pytest.raises(UserError, match=r"layer 1 is not in this store.*extraction.layers=\[0,2\]"):
        part.layer(1)
    with pytest.raises(UserError, match="extraction.layers"):
        run(compose_cfg("extract", extract_overrides(tiny_models["gpt2"], text_corpus, tmp_path / "c", "extraction.layers=[0,9]")))
    from probing.config import TrainConfig

    assert TrainConfig(layer="all").layer_list(part.layers) == [0, 2]
    with pytest.raises(UserError, match=r"layer=1 is not in the store; it has only layers 0, 2"):
        TrainConfig(layer=1).layer_list(part.layers)


def test_device_map_needs_accelerate(tiny_models, monkeypatch):
    import importlib.util

    from concepts.extraction.config import ModelConfig
    from concepts.extraction.models import load_model

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a))
    with pytest.raises(UserError, match="model.device_map='auto' needs the accelerate package"):
        load_model(ModelConfig(name_or_path=str(tiny_models["bert"]), device_map="auto"))


def test_parameter_estimate_against_the_real_models():
    """The estimate from a config alone, against the parameters of the model built on the meta
    device (no memory): Llama-2-7B, Llama-3-8B (grouped key/value heads), Qwen2-7B, BERT-base, GPT-2."""
    from transformers import (
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2Model,
        LlamaConfig,
        LlamaModel,
        Qwen2Config,
        Qwen2Model,
    )

    cases = [
        (LlamaModel, LlamaConfig(hidden_size=4096, num_hidden_layers=32, intermediate_size=11008, num_attention_heads=32,
                                 vocab_size=32000)),
        (LlamaModel, LlamaConfig(hidden_size=4096, num_hidden_layers=32, intermediate_size=14336, num_attention_heads=32,
                                 num_key_value_heads=8, vocab_size=128256)),
        (Qwen2Model, Qwen2Config(hidden_size=3584, num_hidden_layers=28, intermediate_size=18944, num_attention_heads=28,
                                 num_key_value_heads=4, vocab_size=152064)),
        (BertModel, BertConfig()),
        (GPT2Model, GPT2Config()),
    ]
    for model_cls, cfg in cases:
        with torch.device("meta"):
            n = sum(p.numel() for p in model_cls(cfg).parameters())
        assert abs(approx_parameters(cfg) / n - 1) < 0.02, model_cls.__name__
    llama2 = cases[0][1]
    needs = estimate(llama2, 204_283, None, "float32", "bfloat16", 16384)
    assert needs.store == 204_283 * 33 * 4096 * 4 and needs.suggestion == [0, 8, 16, 24, 32]
    assert estimate(llama2, 204_283, [0, 16, 32], "float16", "bfloat16", 16384).store == 204_283 * 3 * 4096 * 2
    assert estimate(BertConfig(), 1000, None, "float32", "float32", 16384).suggestion is None  # small: nothing to say


def test_decoder_preset_composes():
    from latent_concepts import api

    cfg = api.config("pipeline", "experiment=decoder_llm", "model=qwen2.5-7b")
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-7B" and list(cfg.extraction.layers) == [0, 8, 16, 24, 32]
    assert cfg.extraction.dtype.value == "bfloat16" and cfg.pipeline.store == "sampled"
    assert cfg.extraction.input.value == "text"
