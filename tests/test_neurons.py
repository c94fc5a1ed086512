import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import compose_cfg

import concepts.annotation.stage as annotate_mod
import neurons.rank as rank_mod
from concepts.core.errors import UserError
from neurons.evaluate import Data, ablation, jaccard, resolve_ks, retrain_curve, super_sub_overlap
from neurons.rankers import RANKERS, Probeless, ProbelessOneVsRest, make_ranker, pairwise_abs_sums
from neurons.ranking import Ranking
from probing.data import ArrayDataModule
from probing.fit import FitOptions, fit_probe
from probing.regularization import C_GRID

REPO = Path(__file__).resolve().parent.parent
PLANTED = [3, 17, 29]


def planted(n=3000, d=40, seed=0):
    """Three classes carried only by neurons 3 (class 1 high), 17 (class 2 high), 29 (class 0 low)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 3] += 4 * (y == 1)
    X[:, 17] += 4 * (y == 2)
    X[:, 29] -= 4 * (y == 0)
    return X, y


@pytest.mark.parametrize("method", ["probeless", "probe_weights", "iou", "gaussian"])
def test_each_method_ranks_the_planted_neurons_first(method):
    X, y = planted()
    r = make_ranker(method).rank(X, y, ["a", "b", "c"])
    assert set(r.top(3).tolist()) == set(PLANTED)
    assert r.scores.shape == (3, 40) and r.overall.shape == (40,)
    if method == "probe_weights":  # softmax weights are shared out between classes; overall is what counts
        return
    # one-vs-rest methods: per class the carrying neuron comes first
    assert r.top(1, "b")[0] == 3 and r.top(1, "c")[0] == 17 and r.top(1, "a")[0] == 29


def test_random_does_not_and_every_method_shares_the_interface():
    X, y = planted()
    r = make_ranker("random", seed=0).rank(X, y, ["a", "b", "c"])
    assert set(r.top(3).tolist()) != set(PLANTED)
    for name in RANKERS:
        rr = make_ranker(name).rank(X[:500], y[:500], ["a", "b", "c"])
        assert isinstance(rr, Ranking) and sorted(rr.order().tolist()) == list(range(40))


def test_ablating_the_planted_neurons_drops_accuracy_to_chance():
    X, y = planted()
    data = Data(X[:2000], y[:2000], X[2000:], y[2000:], 3)
    fit = fit_probe(ArrayDataModule(data.X_train, data.y_train), 3, FitOptions())
    ranking = Probeless().rank(data.X_train, data.y_train, ["a", "b", "c"])
    rows = {(r["ablated"], r["k"]): r for r in ablation(ranking, fit, data, [3], seed=0)}
    assert rows[("top", 3)]["full"] > 0.95
    assert abs(rows[("top", 3)]["accuracy"] - 1 / 3) < 0.1
    assert rows[("random", 3)]["accuracy"] > 0.85
    zeroed = {(r["ablated"], r["k"]): r for r in ablation(ranking, fit, data, [3], seed=0, value="zero")}
    assert abs(zeroed[("top", 3)]["accuracy"] - 1 / 3) < 0.15 and zeroed[("random", 3)]["accuracy"] > 0.85
    curve = {(r["neurons"], r["k"]): r["accuracy"] for r in retrain_curve(ranking, data, [3], FitOptions(), seed=0)}
    assert curve[("top", 3)] > 0.95 and curve[("bottom", 3)] < 0.5


@pytest.mark.parametrize("method,standardize", [("probeless", True), ("probeless", False), ("probeless_ovr", True),
                                                ("iou", True), ("gaussian", True)])
def test_super_sub_overlap_equals_one_ranking_per_concept(method, standardize):
    """The super/sub table z-scores the shared rows once; each ranking must equal one made on its
    own (the ranker's own standardisation), and the planted neurons must come first."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 30)).astype(np.float32) * rng.uniform(0.5, 3, 30).astype(np.float32)
    subs = {f"s{i}": np.zeros(600, bool) for i in range(3)}
    for i, m in enumerate(subs.values()):
        m[i * 40:(i + 1) * 40] = True
        X[m, 5 + i] += 4  # each sub concept has a neuron of its own; all three share neuron 2
        X[m, 2] += 4
    ranker = make_ranker(method, standardize=standardize)
    rows = super_sub_overlap(ranker, X, {"sup": subs}, top=3)
    union = np.any(list(subs.values()), axis=0)
    sup_top = set(ranker.rank(X, union.astype(int), ["rest", "sup"]).top(3, 1).tolist())
    assert 2 in sup_top
    for r in rows:
        own = ranker.rank(X, subs[r["sub"]].astype(int), ["rest", r["sub"]]).top(3, 1).tolist()
        assert r["shared"] == len(sup_top & set(own)) and {2, 5 + int(r["sub"][1])} <= set(own)
    assert len(rows) == 3 and ranker.standardize == standardize  # the caller's ranker untouched
    X[7, 3] = np.nan  # checked once for all the rankings, still checked
    with pytest.raises(UserError, match="NaN"):
        super_sub_overlap(ranker, X, {"sup": subs}, top=3)


def test_probeless_by_hand():
    # neuron 0: class means 0, 2, 5; neuron 1: 1, 1, 4 (two rows per class)
    X = np.array([[-1, 1], [1, 1], [2, 0], [2, 2], [4, 4], [6, 4]], dtype=np.float32)
    y = np.array([0, 0, 1, 1, 2, 2])
    r = Probeless(standardize=False).rank(X, y, ["a", "b", "c"])
    # per class: the sum over the other classes of |mean difference|
    np.testing.assert_allclose(r.scores, [[2 + 5, 0 + 3], [2 + 3, 0 + 3], [5 + 3, 3 + 3]])
    np.testing.assert_allclose(r.overall, [2 + 5 + 3, 0 + 3 + 3])  # each pair once
    # the one-vs-rest variant: class 0 mean (0, 1), rest (3.5, 2.5)
    ovr = ProbelessOneVsRest().signed(X, y, 3)
    np.testing.assert_allclose(ovr[0], [-3.5, -1.5])
    np.testing.assert_allclose(ovr[2], [5 - 1, 4 - 1])
    # a class with no rows is left out of the pairs
    r4 = Probeless(standardize=False).rank(X, y, ["a", "b", "c", "unseen"])
    np.testing.assert_allclose(r4.overall, r.overall)
    assert not r4.scores[3].any()


def test_pairwise_sums_match_brute_force():
    Q = np.random.default_rng(0).normal(size=(37, 11))
    Q[5] = Q[9]  # ties
    brute = np.abs(Q[:, None, :] - Q[None, :, :]).sum(1)
    np.testing.assert_allclose(pairwise_abs_sums(Q), brute, rtol=1e-10, atol=1e-10)


def test_probeless_agrees_with_neurox():
    nx = pytest.importorskip("neurox.interpretation.probeless",
                             reason="the NeuroX reference: pip install --no-deps neurox (make setup does)")
    rng = np.random.default_rng(3)
    n, d, k = 4000, 64, 9
    y = rng.integers(0, k, n)
    X = rng.normal(size=(n, d)).astype(np.float32) * rng.uniform(0.5, 3, d).astype(np.float32)
    X[:, 7] += 0.8 * y
    X[:, 40] -= 1.5 * (y == 3)
    names = [f"t{i}" for i in range(k)]
    r = Probeless(standardize=False).rank(X, y, names)
    assert r.order().tolist() == nx.get_neuron_ordering(X, y)
    overall, per_tag = nx.get_neuron_ordering_for_all_tags(X, y, dict(enumerate(names)))
    assert r.order().tolist() == overall
    for name in names:
        assert r.order(name).tolist() == per_tag[name]
    summation, _ = nx._get_tag_wise_ranking(nx._get_mean_vectors(X, y)[1], 3)
    np.testing.assert_allclose(r.scores[3], summation, rtol=1e-4)


@pytest.mark.parametrize("method", ["probeless", "probeless_ovr", "probe_weights", "iou", "gaussian"])
def test_a_wide_uninformative_neuron_does_not_lead(method):
    """Planted informative neurons plus neuron 11: no class information, mean 30, sd 40."""
    X, y = planted()
    X[:, 11] = 30 + 40 * np.random.default_rng(5).normal(size=len(X))
    r = make_ranker(method, standardize=True).rank(X, y, ["a", "b", "c"])
    assert set(r.top(3).tolist()) == set(PLANTED)
    assert int(np.flatnonzero(r.order() == 11)[0]) >= 3
    raw = make_ranker(method, standardize=False).rank(X, y, ["a", "b", "c"])
    if make_ranker(method).scale_sensitive:  # on raw activations it beats every other uninformative neuron
        assert int(np.flatnonzero(raw.order() == 11)[0]) == 3
    else:
        assert raw.order().tolist()[:3] == r.order().tolist()[:3]


def test_bad_input_and_ranking_files(tmp_path):
    X, y = planted(n=200)
    r = Probeless().rank(X, y, ["a", "b", "c"], meta={"store": "abc", "model": "m"})
    with pytest.raises(UserError, match="k=41 must be between 1 and the 40"):
        r.top(41)
    with pytest.raises(UserError, match="outside 1..40"):
        resolve_ks([5, 100], 40)
    assert resolve_ks([5, "50%", 5], 40) == [5, 20]
    with pytest.raises(UserError, match="labels have length 199"):
        Probeless().rank(X, y[:199], ["a", "b", "c"])
    with pytest.raises(UserError, match="at least two classes"):
        Probeless().rank(X, np.zeros(200, int), ["a", "b", "c"])
    r.save(tmp_path / "r")
    back = Ranking.load(tmp_path / "r", expect={"store": "abc"})
    assert back.order().tolist() == r.order().tolist() and back.classes == r.classes
    with pytest.raises(UserError, match="made for store='abc'"):
        Ranking.load(tmp_path / "r", expect={"store": "other-model-store"})
    assert jaccard([1, 2, 3], [2, 3, 4]) == pytest.approx(0.5)


def _over(tiny_models, corpus, ws, *extra):
    return ["model=hf", f"model.name_or_path={tiny_models['bert']}", "model.name=tiny", "corpus=ewt",
            f"corpus.path={corpus}", "corpus.name=tagged", f"paths.workspace={ws}", "extraction.progress=false",
            "extraction.device=cpu", "sampling.min_count=1", "sampling.max_per_type=20", "discovery.k=6", *extra]


def test_rank_app_per_layer_concatenated_and_super_sub(tiny_models, tagged_corpus, tmp_path):
    over = _over(tiny_models, tagged_corpus, tmp_path, "discovery.k=30")  # small concepts: several per tag
    annotate_mod.run(compose_cfg("annotate", over))  # concept records with UPOS alignment
    rk = [*over, "probing.min_examples=5", "neurons.ks=[2,8]"]
    res = rank_mod.run(compose_cfg("rank", [*rk, "layer=2"]))
    (unit,) = res.rankings
    udir = res.path / unit
    assert unit == "layer_02" and (udir / "ranking.json").exists() and (udir / "salience.png").exists()
    assert set(res.curves["kind"]) == {"retrain", "ablation"} and set(res.curves["k"]) == {2, 8}
    words = json.loads((udir / "top_words.json").read_text())
    assert len(words) == 20 and all(len(v) >= 1 for v in words.values())
    assert len(res.super_sub) >= 1 and res.super_sub["share"].between(0, 1).all()
    assert set(res.super_sub["super"]) <= {"UPOS=DET", "UPOS=NOUN", "UPOS=VERB", "UPOS=ADV", "UPOS=PUNCT"}
    cat = rank_mod.run(compose_cfg("rank", [*rk, "neurons.concat=true", "ranking=probe_weights"]))
    (unit,) = cat.rankings
    r = cat.rankings[unit]
    assert unit == "layers_0-1-2" and r.dim == 96 and r.neurons[40] == "L1:8"
    assert (cat.path / unit / "layers.png").exists()
    # one probe, probing's: ranked and ablated; the ranking and eval.json record its C
    assert r.meta["probe"]["C"] in C_GRID and r.meta["probe"]["optimizer"] == "lbfgs"
    assert json.loads((cat.path / unit / "eval.json").read_text())["probe"] == r.meta["probe"]
    with pytest.raises(UserError, match="labels=upos, xpos or concepts"):
        rank_mod.run(compose_cfg("rank", [*rk, "labels=concept_binary"]))


def test_a_new_probe_reevaluates_without_reranking(tiny_models, tagged_corpus, tmp_path, monkeypatch):
    """The evaluation's probes are the run's probe: another probe config re-runs the evaluation
    (a new folder) and reuses the ranking; probe_weights ranks that probe."""
    rk = [*_over(tiny_models, tagged_corpus, tmp_path), "probing.min_examples=5", "neurons.ks=[2,8]", "layer=1",
          "neurons.super_sub=false"]
    first = rank_mod.run(compose_cfg("rank", rk))
    monkeypatch.setattr(rank_mod, "make_ranker", lambda *a, **k: pytest.fail("re-ranked"))
    changed = rank_mod.run(compose_cfg("rank", [*rk, "probe.c_grid=[0.001]"]))
    monkeypatch.undo()
    assert changed.path != first.path
    a, b = first.rankings["layer_01"], changed.rankings["layer_01"]
    assert a.order().tolist() == b.order().tolist() and b.meta["fingerprint"] != a.meta["fingerprint"]
    assert json.loads((changed.path / "layer_01" / "eval.json").read_text())["probe"]["C"] == 0.001
    assert (changed.path / "layer_01" / "scale.json").exists() and (changed.path / "layer_01" / "top_words.json").exists()
    pw = rank_mod.run(compose_cfg("rank", [*rk, "ranking=probe_weights", "probe.c_grid=[0.001]"]))
    assert pw.rankings["layer_01"].meta["probe"]["C"] == 0.001  # probe_weights ranks the run's probe


def test_rank_sweep_over_methods_is_summarised(tiny_models, tagged_corpus, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "neurons.rank", "-m", "ranking=probeless,random", "layer=1",
                          *_over(tiny_models, tagged_corpus, tmp_path), "probing.min_examples=5", "neurons.ks=[2,8]",
                          "neurons.super_sub=false"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = list((tmp_path / "logs" / "rank-multirun").iterdir())
    curves = pd.read_csv(sweep / "curves.csv")
    assert set(curves["method"]) == {"probeless", "random"} and (sweep / "curves.png").exists()
    overlap = pd.read_csv(sweep / "overlap.csv")
    assert set(overlap["k"]) == {10, 50} or set(overlap["k"]) == {10}
    assert overlap["jaccard"].between(0, 1).all()


def _cli(module, args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_partial_discovery_layer_checks_scale_report_and_nan_stores(tiny_models, tagged_corpus, tmp_path):
    import concepts.discovery.stage as discover_mod
    from concepts.extraction.store import ActivationStore

    over = _over(tiny_models, tagged_corpus, tmp_path, "discovery.k=30")
    disc = discover_mod.run(compose_cfg("discover", [*over, "discovery.layers=[2]"]))  # concepts for layer 2 only
    rk = [*over, "probing.min_examples=5", "neurons.ks=[2,8]", "ranking=iou"]
    res = rank_mod.run(compose_cfg("rank", [*rk, "layer=[1,2]"]))  # gold tags: the missing layer is no failure
    assert sorted(res.rankings) == ["layer_01", "layer_02"] and res.super_sub_missing == [1]
    assert len(res.super_sub) and set(res.super_sub["layer"]) == {2}
    again = rank_mod.run(compose_cfg("rank", [*rk, "layer=[1,2]"]))  # reused, and still says what is missing
    assert again.super_sub_missing == [1]
    scale = json.loads((res.path / "layer_01" / "scale.json").read_text())
    assert scale["scale_sensitive"] is False and isinstance(scale["outliers"], list)
    with pytest.raises(UserError, match="layers"):
        Ranking.load(res.path / "layer_01", expect={"layer": 2})
    assert Ranking.load(res.path / "layer_01", expect={"layer": 1, "store": res.rankings["layer_01"].meta["store"]})
    # a NaN in the store: one line naming the layer and the first bad row, exit 2, from both apps
    # (in the store of every word that probes and rankings read; the discovery above used a sampled one)
    assert ActivationStore(disc.store).sample_rows is not None
    layer0 = sorted(tmp_path.rglob("activations/shards/*/layer_00.npy"))[0]
    arr = np.load(layer0, mmap_mode="r+")
    arr[3, 5] = np.nan
    arr.flush()
    del arr
    for module, extra in (("probing.train", ["layer=0", "probing.min_examples=5"]), ("neurons.rank", [*rk[len(over):], "layer=0"])):
        out = _cli(module, [*over, *extra], tmp_path)
        assert out.returncode == 2, out.stderr[-2000:]
        text = out.stderr + out.stdout
        assert "NaN/inf" in text and "layer 0" in text and "Traceback" not in text
    with pytest.raises(UserError, match="NaN/inf"):
        rank_mod.run(compose_cfg("rank", [*rk, "layer=0"]))
