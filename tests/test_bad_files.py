"""Damaged or unusual inputs are one-line `UserError`s naming the file (or option) and what is
wrong, nothing is overwritten, and a re-run repairs what the message says to delete."""

import json
import shutil

import numpy as np
import pytest
from helpers import compose_cfg, extract_overrides

import concepts.extraction.stage as extract_mod
from concepts.core.artifacts import read_manifest
from concepts.core.errors import UserError
from concepts.discovery.records import Concept, Member, read_concepts, write_concepts
from concepts.extraction.config import ModelConfig
from concepts.extraction.models import load_model
from concepts.extraction.store import ActivationStore


def _run(model_dir, corpus, ws, *extra):
    return extract_mod.run(compose_cfg("extract", extract_overrides(model_dir, corpus, ws, *extra)))


def test_truncated_shard_and_corrupt_token_table(tiny_models, text_corpus, tmp_path):
    path = _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.shard_sentences=3").store
    good = np.asarray(ActivationStore(path).layer(1)).copy()
    shard = path / "shards" / "shard-00000"
    f = shard / "layer_01.npy"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # a disk-full or killed copy
    with pytest.raises(UserError, match=r"shard-00000/layer_01.npy (cannot be read|has shape).*delete the folder"):
        ActivationStore(path).layer(1)
    (shard / "tokens.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(UserError, match=r"shard-00000/tokens.parquet cannot be read"):
        ActivationStore(path).tokens()
    # the advice works: delete the shard, re-run, and the store is whole and identical
    shutil.rmtree(shard)
    res = _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.shard_sentences=3")
    assert res.store == path and res.shards_written == 1
    np.testing.assert_array_equal(np.asarray(ActivationStore(path).layer(1)), good)


def test_store_keeps_its_shard_layout_and_shard_size_is_not_identity(tiny_models, text_corpus, tmp_path):
    a = _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.shard_sentences=3")
    b = _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.shard_sentences=2")
    assert a.store == b.store and b.shards_written == 0  # same vectors: same store, nothing redone
    manifest = read_manifest(a.store)
    assert manifest["config"]["extraction"]["shard_sentences"] == 3
    shutil.rmtree(a.store / "shards" / "shard-00001")  # a resume keeps the store's own layout
    c = _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.shard_sentences=2")
    assert c.shards_written == 1 and read_manifest(a.store)["config"]["extraction"]["shard_sentences"] == 3


def test_bad_manifests(tmp_path):
    (tmp_path / "manifest.json").write_text('{"stage": "extract", ')
    with pytest.raises(UserError, match=r"manifest.json is not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"complete": true, "n_layers": 3}')  # an older format
    with pytest.raises(UserError, match=r"manifest.json lacks stage, fingerprint.*delete its folder"):
        ActivationStore(tmp_path)
    (tmp_path / "manifest.json").write_text('{"stage": "discover", "fingerprint": "x"}')
    with pytest.raises(UserError, match=r"holds the output of concepts.discover, not an activation store"):
        ActivationStore(tmp_path)


def test_concept_records_edited_by_hand(tmp_path):
    f = tmp_path / "concepts-K2.jsonl"
    write_concepts(f, [Concept.build("m", 1, 2, i, [Member("dog", 0, i)]) for i in range(2)])
    assert len(read_concepts(f)) == 2
    lines = f.read_text().splitlines()
    f.write_text(lines[0] + "\n" + lines[1][:-5] + "\n")  # a truncated second record
    with pytest.raises(UserError, match=r"concepts-K2.jsonl:2: not a JSON record"):
        read_concepts(f)
    rec = json.loads(lines[1])
    del rec["members"]
    f.write_text(lines[0] + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(UserError, match=r"concepts-K2.jsonl:2: not a concept record \(missing field 'members'\)"):
        read_concepts(f)
    rec = json.loads(lines[1])
    rec["layer"] = "one"
    f.write_text(lines[0] + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(UserError, match=r"concepts-K2.jsonl:2: not a concept record"):
        read_concepts(f)


def test_model_folder_without_weights(tiny_models, text_corpus, tmp_path):
    d = tmp_path / "noweights"
    shutil.copytree(tiny_models["bert"], d)
    for w in list(d.glob("*.safetensors")) + list(d.glob("*.bin")):
        w.unlink()
    with pytest.raises(UserError, match=r"cannot load the weights of model .*noweights.*model.safetensors"):
        load_model(ModelConfig(name_or_path=str(d)))
    with pytest.raises(UserError, match="cannot load the weights"):
        _run(d, text_corpus, tmp_path / "ws")
    assert not (tmp_path / "ws").exists()  # nothing written


def test_max_length_beyond_the_model(tiny_models, text_corpus, tmp_path):
    limit = load_model(ModelConfig(name_or_path=str(tiny_models["bert"]))).max_length
    with pytest.raises(UserError, match=rf"extraction.max_length={limit + 1} is beyond .* \({limit} subwords"):
        _run(tiny_models["bert"], text_corpus, tmp_path, f"extraction.max_length={limit + 1}")
    assert not list(tmp_path.rglob("manifest.json"))


def test_roberta_position_limit_without_model_max_length(tiny_models, tmp_path):
    """The tiny RoBERTa has 66 position rows, padding index 1 and no tokenizer limit: 64 subwords fit."""
    lm = load_model(ModelConfig(name_or_path=str(tiny_models["roberta"])))
    assert not 0 < (lm.tokenizer.model_max_length or 0) < 1_000_000  # the case the issue names
    assert lm.max_length == 64
    word = "dog"
    per = len(lm.tokenizer([[word]], is_split_into_words=True, add_special_tokens=False)["input_ids"][0])
    fit = 62 // per  # 2 special tokens + fit * per <= 64
    over = fit + 1  # past the real limit of 64 (the old limit, 66, let 65 and 66 through and crashed)
    assert over * per + 2 > 64
    p = tmp_path / "c.txt"
    p.write_text(" ".join([word] * fit) + "\n" + " ".join([word] * over) + "\n" + " ".join([word] * 150) + "\n")
    skip = ActivationStore(_run(tiny_models["roberta"], p, tmp_path / "s").store)  # the first fits; the others do not
    assert sorted(set(skip.tokens()["sentence"])) == [0]
    assert skip.manifest["counts"]["sentences_skipped_subword_limit"] == 2
    win = ActivationStore(_run(tiny_models["roberta"], p, tmp_path / "w", "extraction.long_sentences=window").store)
    assert len(win.tokens()) == fit + over + 150 and np.isfinite(np.asarray(win.layer(3))).all()


def test_local_model_saved_anew_is_another_store(tiny_models, text_corpus, tmp_path):
    import torch
    from transformers import AutoModel

    d = tmp_path / "model"
    shutil.copytree(tiny_models["bert"], d)
    first = _run(d, text_corpus, tmp_path / "ws")
    assert _run(d, text_corpus, tmp_path / "ws").store == first.store  # untouched: reused
    model = AutoModel.from_pretrained(d)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    model.save_pretrained(d)  # overwritten in place
    second = _run(d, text_corpus, tmp_path / "ws")
    assert second.store != first.store and second.shards_written > 0
    assert not np.allclose(np.asarray(ActivationStore(first.store).layer(2)), np.asarray(ActivationStore(second.store).layer(2)))


def test_a_large_new_store_asks_first(tiny_models, text_corpus, tmp_path, monkeypatch, caplog):
    import concepts.core.confirm as confirm_mod

    words = sum(len(s.split()) for s in text_corpus.read_text().splitlines())
    gb = words * 3 * 32 * 4 / 1e9  # 3 layers (embeddings + 2) x 32 float32
    with caplog.at_level("INFO"), pytest.raises(UserError, match=rf"{words} words x 3 layers x 32 .*about {gb:.3g} GB"
                                                                 r".*pipeline.store=sampled.*"
                                                                 r"above extraction.confirm_above_gb=1e-09"):
        _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.confirm_above_gb=0.000000001")
    assert not list(tmp_path.rglob("manifest.json"))  # nothing started
    monkeypatch.setattr(confirm_mod.sys, "stdin", type("Tty", (), {"isatty": lambda self: True})())
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    res = _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.confirm_above_gb=0.000000001")
    assert res.complete
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("asked again for a store that exists"))
    assert _run(tiny_models["bert"], text_corpus, tmp_path, "extraction.confirm_above_gb=0.000000001").complete
