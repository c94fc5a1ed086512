"""The notebook path (concepts.api): extraction from in-memory sentences, typed configs from the
same YAML (environment variables included), and running apps without a command line."""

import numpy as np
import pytest
from conftest import SENTENCES
from helpers import reference_vectors

from concepts.core.config import PathsConfig
from concepts.core.errors import UserError
from concepts.corpus.config import CorpusConfig
from concepts.discovery.records import read_concepts
from concepts.extraction.config import ModelConfig
from concepts.extraction.models import load_model
from concepts.extraction.store import ActivationStore
from latent_concepts import api


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_extract_in_memory_equals_a_hand_reference(tiny_models, arch):
    lm = load_model(ModelConfig(name_or_path=str(tiny_models[arch])))
    vecs = api.extract(SENTENCES[:4], lm=lm, aggregation="mean")
    words = [s.split() for s in SENTENCES[:4]]
    assert vecs.layers.shape == (lm.n_layers, sum(map(len, words)), lm.hidden_size) and not vecs.skipped
    for i, w in enumerate(words):
        rows = np.flatnonzero(vecs.tokens["sentence"].to_numpy() == i)
        assert vecs.tokens.loc[rows, "word"].tolist() == w
        np.testing.assert_allclose(vecs.layers[:, rows], reference_vectors(lm, w, "mean"), atol=1e-5)
    with pytest.raises(UserError, match="aggregation='max'"):
        api.extract(SENTENCES[:1], lm=lm, aggregation="max")


def test_configs_honour_the_same_environment_as_the_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPTS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("CONCEPTS_EWT", str(tmp_path / "ewt"))
    cfg = api.config("train", "layer=1", "labels=xpos")
    assert cfg.paths.workspace == str(tmp_path / "ws") and cfg.corpus.path == str(tmp_path / "ewt")
    assert cfg.layer == 1 and cfg.labels.tag == "xpos" and type(cfg).__name__ == "TrainConfig"
    # dataclasses built directly read the same variables
    assert PathsConfig().workspace == str(tmp_path / "ws") and CorpusConfig().path == str(tmp_path / "ewt")
    with pytest.raises(UserError, match="unknown app"):
        api.config("nope")
    with pytest.raises(UserError, match="batchsize"):
        api.config("extract", "extraction.batchsize=3")


def test_run_the_apps_from_python(tiny_models, tagged_corpus, tmp_path):
    common = ["model=hf", f"model.name_or_path={tiny_models['bert']}", "model.name=tiny", f"corpus.path={tagged_corpus}",
              f"paths.workspace={tmp_path}", "extraction.progress=false"]
    store = ActivationStore(api.run("extract", *common).store)
    common += ["sampling.min_count=1", "sampling.max_per_type=20", "discovery.k=6"]
    assert store.n_layers == 3
    disc = api.run("discover", *common, "discovery.layers=[2]")
    assert len(read_concepts(disc.path / "layer_02" / "concepts-K6.jsonl")) == 6
    probe = api.run("train", *common, "layer=2", "probing.min_examples=3")
    assert [r.layer for r in probe.results] == [2] and probe.results[0].accuracy > 0.5
    ranked = api.run("rank", *common, "layer=2", "neurons.ks=[2,8]", "neurons.super_sub=false")
    assert ranked.rankings["layer_02"].dim == 32
