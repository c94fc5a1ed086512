import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_cfg
from sklearn.linear_model import LogisticRegression
from wandb_files import read_run

import concepts.annotation.stage as annotate_mod
import concepts.discovery.stage as discover_mod
import probing.train as train_mod
from concepts.core.errors import UserError
from probing.data import ArrayDataModule, LabelSet, control_labels, split_examples
from probing.fit import FitOptions, evaluate, fit_probe

REPO = Path(__file__).resolve().parent.parent


def _fit(X, y, classes, idx, **opt):
    tr, te = idx
    f = fit_probe(ArrayDataModule(X[tr], y[tr]), classes, FitOptions(**opt))
    return f, float(np.mean(f.predict(X[te]) == y[te]))


def _blobs(n=1200, d=16, k=4, sep=6.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * sep
    y = rng.integers(0, k, n)
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    return X, y


@pytest.mark.parametrize("opt", [{}, {"transform": "zscore"}, {"optimizer": "adam", "lr": 0.01, "max_epochs": 30, "patience": 0},
                                 {"kind": "mlp", "optimizer": "adam", "lr": 0.01, "max_epochs": 30, "patience": 0}])
def test_planted_signal_is_found_and_shuffled_labels_give_chance(opt):
    X, y = _blobs()
    idx = (np.arange(800), np.arange(800, 1200))
    _, acc = _fit(X, y, 4, idx, **opt)
    assert acc > 0.97
    y_shuf = np.random.default_rng(1).permutation(y)
    _, acc = _fit(X, y_shuf, 4, idx, **opt)
    assert abs(acc - 0.25) < 0.08


def test_lightning_probe_matches_sklearn_logistic_regression():
    X, y = _blobs(n=3000, d=32, k=6, sep=0.6, seed=3)  # overlapping classes: accuracy well below 1
    tr, te = np.arange(2000), np.arange(2000, 3000)
    f, acc = _fit(X, y, 6, (tr, te), transform="zscore", l2=1e-4, select=False)
    Xs = (X - f.transform.mean) / f.transform.std
    sk = LogisticRegression(C=1 / (2 * 1e-4 * len(tr)), max_iter=5000, tol=1e-8).fit(Xs[tr], y[tr])
    assert 0.5 < acc < 0.95
    assert abs(acc - sk.score(Xs[te], y[te])) <= 0.02
    # same objective, so the weights agree too (up to the softmax's shift invariance)
    w = f.input_weights()
    w_sk = sk.coef_ * 1.0
    np.testing.assert_allclose(w - w.mean(0), w_sk - w_sk.mean(0), atol=0.05 * np.abs(w_sk).max())
    _, acc_white = _fit(X, y, 6, (tr, te), transform="whiten", l2=1e-4, select=False)  # another basis, same accuracy
    assert abs(acc_white - acc) <= 0.02


def test_control_task_on_word_identity_labels_gives_low_selectivity():
    rng = np.random.default_rng(0)
    n_types, n = 60, 3000
    emb = rng.normal(size=(n_types, 80)) * 3  # more dimensions than types: any labelling of types is linear
    types = rng.integers(0, n_types, n)
    words = np.array([f"w{t}" for t in types])
    y = types % 5  # the label is a function of the word alone
    X = (emb[types] + rng.normal(size=(n, 80)) * 0.3).astype(np.float32)
    ls = LabelSet("ident", np.arange(n), y, [str(i) for i in range(5)], words, rng.integers(0, 600, n))
    split = split_examples(ls, "sentence", 0.6, 0.2, 0)
    yc = control_labels(words, y, split.train, 5, seed=0)
    assert all(len(set(yc[words == w])) == 1 for w in np.unique(words))  # one control label per type
    _, task = _fit(X, y, 5, (split.train, split.test))
    _, control = _fit(X, yc, 5, (split.train, split.test))
    assert task > 0.95 and control > 0.9 and task - control < 0.1
    # the control distribution follows the task's label distribution
    assert abs(np.bincount(yc, minlength=5) / n - np.bincount(y, minlength=5) / n).max() < 0.15


def test_split_by_type_keeps_test_words_unseen():
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in rng.integers(0, 50, 500)])
    ls = LabelSet("t", np.arange(500), rng.integers(0, 3, 500), ["a", "b", "c"], words, np.arange(500) // 5)
    s = split_examples(ls, "type")
    assert not set(words[s.train]) & set(words[s.test])
    s = split_examples(ls, "sentence")
    assert not set(ls.sentences[s.train]) & set(ls.sentences[s.test])
    assert len(s.train) + len(s.dev) + len(s.test) == 500


def test_evaluate_by_hand():
    m = evaluate(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), ["a", "b", "c"])
    assert m.accuracy == pytest.approx(0.6)
    assert m.per_class["a"]["f1"] == pytest.approx(0.5) and m.per_class["b"]["f1"] == pytest.approx(0.8)
    assert m.macro_f1 == pytest.approx((0.5 + 0.8 + 0.0) / 3)


# ---------------------------------------------------------------- the app

def _over(tiny_models, corpus, ws, *extra):
    return ["model=hf", f"model.name_or_path={tiny_models['bert']}", "model.name=tiny", "corpus=ewt",
            f"corpus.path={corpus}", "corpus.name=tagged", f"paths.workspace={ws}", "extraction.progress=false",
            "extraction.device=cpu", "probing.min_examples=5", "probing.plot=true", *extra]


def test_train_tags_all_layers_resume_and_bad_input(tiny_models, tagged_corpus, tmp_path, monkeypatch):
    over = _over(tiny_models, tagged_corpus, tmp_path)
    res = train_mod.run(compose_cfg("train", over))
    assert sorted(r.layer for r in res.results) == [0, 1, 2]
    assert all(r.task == "upos" and r.classes == 5 and r.control_accuracy is not None for r in res.results)
    assert all(r.selectivity == pytest.approx(r.accuracy - r.control_accuracy) for r in res.results)
    assert all(0 < r.control_seconds < 60 and 0 < r.seconds for r in res.results)  # both fits timed
    assert max(r.accuracy for r in res.results) > 0.8  # tags follow the words here (chance is under 0.3)
    assert (res.path / "summary.csv").exists() and (res.path / "summary.png").stat().st_size > 1000
    assert len(res.summary) == 3
    monkeypatch.setattr(train_mod, "fit_probe", lambda *a, **k: pytest.fail("retrained"))
    again = train_mod.run(compose_cfg("train", over))
    assert [r.accuracy for r in again.results] == [r.accuracy for r in res.results]
    monkeypatch.undo()
    with pytest.raises(UserError, match="layer=9 does not exist"):
        train_mod.run(compose_cfg("train", [*over, "layer=9"]))
    with pytest.raises(UserError, match="has 1 class"):
        # deprel: 60 root, 360 dep; at 100 examples per class only dep is left
        train_mod.run(compose_cfg("train", [*over, "labels.tag=deprel", "layer=0", "probing.min_examples=100"]))
    with pytest.raises(UserError, match="no such column"):
        train_mod.run(compose_cfg("train", [*over, "labels.tag=nope", "layer=0"]))


def test_train_on_concepts_and_a_store_from_another_corpus(tiny_models, tagged_corpus, text_corpus, tmp_path):
    over = _over(tiny_models, tagged_corpus, tmp_path, "sampling.min_count=1", "sampling.max_per_type=20", "discovery.k=6")
    annotate_mod.run(compose_cfg("annotate", [o for o in over if not o.startswith("probing.")]))
    multi = train_mod.run(compose_cfg("train", [*over, "labels=concepts", "labels.top=4", "labels.require_label=false", "layer=2"]))
    (r,) = multi.results
    assert r.source == "concepts" and 2 <= r.classes <= 4
    binary = train_mod.run(compose_cfg("train", [*over, "labels=concept_binary", "labels.top=3", "labels.require_label=false",
                                                 "layer=2", "probing.min_test_class=5"]))
    assert len(binary.results) == 3 and all(r.classes == 2 and r.skipped is None for r in binary.results)
    # the default minimum of positives in test is more than this tiny corpus gives: skipped, with the reason
    strict = train_mod.run(compose_cfg("train", [*over, "labels=concept_binary", "labels.top=3", "labels.require_label=false",
                                                 "layer=2", "probing.min_test_class=1000"]))
    assert all(r.skipped and "probing.min_test_class=1000" in r.skipped and r.accuracy is None for r in strict.results)
    assert strict.summary["skipped"].notna().all()
    # concepts of another corpus cannot label this store
    other = discover_mod.run(compose_cfg("discover", [
        "model=hf", f"model.name_or_path={tiny_models['bert']}", "model.name=tiny", "corpus=text", f"corpus.path={text_corpus}",
        f"paths.workspace={tmp_path}", "extraction.progress=false", "sampling.min_count=1", "discovery.k=4", "discovery.layers=[2]"]))
    with pytest.raises(UserError, match="another model or corpus"):
        train_mod.run(compose_cfg("train", [*over, "labels=concepts", f"labels.concepts={other.path}", "layer=2"]))


def _cli(args, cwd, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "probing.train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_multirun_with_joblib_gives_one_result_per_layer_and_one_summary(tiny_models, tagged_corpus, tmp_path):
    train_mod.run(compose_cfg("train", _over(tiny_models, tagged_corpus, tmp_path, "layer=0", "probing.control=false")))  # extract once
    out = _cli(["-m", "layer=0,1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                *_over(tiny_models, tagged_corpus, tmp_path), "logger=wandb"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    sweeps = list((tmp_path / "logs" / "train-multirun").iterdir())
    assert len(sweeps) == 1
    sweep = sweeps[0]
    per_job = sorted(sweep.glob("*/probe-results.json"))
    assert len(per_job) == 3
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert len(summary) == 4 and (sweep / "summary.png").exists()
    # W&B offline: one run per probe plus the summary run, grouped by the sweep, metrics on disk
    dirs = [d for d in tmp_path.rglob("offline-run-*") if d.is_dir()]
    assert all(d.parent == tmp_path / "wandb" / "wandb" for d in dirs)  # one folder: one `wandb sync` for all
    runs = [read_run(d) for d in dirs]
    assert len(runs) == 4 and {r["group"] for r in runs} == {f"sweep-{sweep.name}"}
    for r in runs:  # each probe run carries the resolved config with its own layer
        if r["job_type"] == "probe":
            assert r["config"]["layer"] == int(r["name"].split("-L")[1].split("-")[0])
            assert r["config"]["model"]["name"] == "tiny" and r["config"]["fingerprints"]["store"]
    results = {json.loads(f.read_text())[0]["layer"]: json.loads(f.read_text())[0] for f in per_job}
    probes = sorted((r for r in runs if "accuracy" in r["summary"]), key=lambda r: r["name"])
    # names: model, corpus, layer, task and probe kind
    assert [r["name"] for r in probes] == [f"tiny-tagged-L{i}-upos-linear" for i in range(3)]
    for layer, r in enumerate(probes):
        assert r["summary"]["accuracy"] == pytest.approx(results[layer]["accuracy"])
        assert r["summary"]["selectivity"] == pytest.approx(results[layer]["selectivity"])
        assert {"tiny", f"layer{layer}", "upos"} <= set(r["tags"])
        assert any("val_loss" in h for h in r["history"])
    (summary_run,) = [r for r in runs if r["name"].endswith("-summary")]
    assert summary_run["summary"]["probe_summary/nrows"] == 3


@pytest.mark.slow
def test_submitit_local_launcher(tiny_models, tagged_corpus, tmp_path):
    out = _cli(["-m", "layer=1", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                *_over(tiny_models, tagged_corpus, tmp_path, "probing.control=false")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = list((tmp_path / "logs" / "train-multirun").iterdir())
    (job,) = list(sweep.glob("*/probe-results.json"))
    (r,) = json.loads(job.read_text())
    assert r["layer"] == 1 and r["task"] == "upos"
    assert (sweep / "summary.csv").exists()


def test_type_split_flags_selectivity_and_results_carry_intervals(tiny_models, tagged_corpus, tmp_path):
    over = _over(tiny_models, tagged_corpus, tmp_path, "layer=1", "probing.min_test=5")
    sent = train_mod.run(compose_cfg("train", over)).results[0]
    typed = train_mod.run(compose_cfg("train", [*over, "split=type"])).results[0]
    assert "type_split_control" in typed.flags and "type_split_control" not in sent.flags
    for r in (sent, typed):
        assert r.accuracy_low <= r.accuracy <= r.accuracy_high
        assert r.control_low <= r.control_accuracy <= r.control_high
        assert r.selectivity_low <= r.selectivity <= r.selectivity_high
    # tags follow the words here: the word-type lookup is near perfect under the sentence split
    # and is the majority label only under the type split (no test type seen in training)
    assert sent.lexical_accuracy > 0.9 and typed.lexical_accuracy == pytest.approx(typed.majority_accuracy)
    summary = (train_mod.run(compose_cfg("train", [*over, "split=type"])).path / "summary.csv").read_text()
    assert "type_split_control" in summary and "accuracy_low" in summary
    with pytest.raises(UserError, match="probe.c_grid"):
        train_mod.run(compose_cfg("train", [*over, "probe.c_grid=[]"]))


def test_resplits_report_the_spread_and_every_result_says_what_its_interval_covers(tiny_models, tagged_corpus, tmp_path):
    over = _over(tiny_models, tagged_corpus, tmp_path, "layer=1", "probing.min_test=5")
    r = train_mod.run(compose_cfg("train", [*over, "probing.resplits=2"])).results[0]
    assert r.resplits == 2 and r.resplit_accuracy_sd is not None and r.resplit_selectivity_sd is not None
    assert r.resplit_accuracy_min <= r.accuracy <= r.resplit_accuracy_max
    assert "test sentences" in r.interval and r.balanced_low <= r.balanced_accuracy <= r.balanced_high
    tok = train_mod.run(compose_cfg("train", [*over, "probing.interval=token"])).results[0]
    assert "Wilson" in tok.interval and tok.accuracy == r.accuracy  # the same split and fit, another interval
    from probing.stats import wilson
    hits = round(tok.accuracy * tok.n_test)
    assert (tok.accuracy_low, tok.accuracy_high) == pytest.approx(wilson(hits, tok.n_test))
    with pytest.raises(UserError, match="probing.interval"):
        train_mod.run(compose_cfg("train", [*over, "probing.interval=tokens"]))


def test_concept_probes_on_a_fresh_workspace_run_every_stage_before(tiny_models, tagged_corpus, tmp_path):
    """labels=concept_binary with nothing made yet: extraction, discovery and (offline) annotation run
    first, and the probes train on the labels they made; a later annotation makes the probes stale."""
    over = _over(tiny_models, tagged_corpus, tmp_path, "sampling.min_count=1", "sampling.max_per_type=20",
                 "discovery.k=6", "labels=concept_binary", "labels.top=2", "labels.min_rows=60", "layer=2",
                 "probing.min_test=5")
    res = train_mod.run(compose_cfg("train", over))
    assert res.results and all(r.source == "concept_binary" for r in res.results)
    (concepts,) = list(tmp_path.rglob("concepts/ward-*"))
    assert list((concepts / "annotations").glob("alignment-*.json"))
    # the probes' identity covers the labels of their layer: new records there are new results
    # (in the same folder: the folder is named by the settings, each result by its layer's records)
    f = concepts / "layer_02" / "concepts-K6.jsonl"
    f.write_text(f.read_text().replace('"label": "', '"label": "relabelled ', 1))
    again = train_mod.run(compose_cfg("train", over))
    assert again.path == res.path
    assert {r.fingerprint for r in again.results}.isdisjoint({r.fingerprint for r in res.results})


def test_summary_plot_draws_concept_probes_whose_interval_misses_the_mean(tmp_path):
    """Concept-probe points whose interval does not hold the mean (seen in the demo: accuracy at 1.0
    rounded above its upper bound) are drawn, not a crash."""
    import pandas as pd

    from probing.summary import plot_summary

    rows = [{"model": "m", "layer": layer, "source": "concepts", "task": f"concepts-L{layer}-top2", "accuracy": acc,
             "accuracy_low": acc - 0.01, "accuracy_high": acc - 1e-9, "control_accuracy": 0.5, "control_low": 0.4,
             "control_high": 0.6, "selectivity": acc - 0.5, "selectivity_low": acc - 0.45, "selectivity_high": acc - 0.4,
             "lexical_accuracy": 0.9, "majority_accuracy": 0.5, "flags": ""}
            for layer, acc in ((0, 1.0), (1, 0.98))]
    plot_summary(pd.DataFrame(rows), tmp_path / "s.png", "t")
    assert (tmp_path / "s.png").stat().st_size > 5000
