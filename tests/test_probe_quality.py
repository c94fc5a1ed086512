"""The default probe against scikit-learn at small n (synthetic and UD English EWT with the
embedded MiniLM), its intervals and baselines, the word-type rule, and clear errors."""

import numpy as np
import pytest
from conftest import EWT
from helpers import compose_cfg
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

from concepts.core.errors import UserError
from probing.data import ArrayDataModule, LabelSet, control_labels, split_examples
from probing.fit import FitOptions, evaluate, fit_probe
from probing.regularization import C_GRID
from probing.stats import lexical_baseline, paired_bootstrap, wilson

needs_ewt = pytest.mark.skipif(not EWT.exists(), reason=f"UD English EWT not found at {EWT}")


def _sklearn(Xtr, ytr, Xdv, ydv, Xte, yte) -> tuple[float, float]:
    """(accuracy of a logistic regression with C chosen by 5-fold CV on train+dev (log loss),
    refitted on train; accuracy of scikit-learn's default C=1), on z-scored inputs."""
    mean, sd = Xtr.mean(0), Xtr.std(0)
    sd = np.where(sd > 1e-8, sd, 1)
    z = lambda X: (X - mean) / sd  # noqa: E731
    cv = LogisticRegressionCV(Cs=list(C_GRID), cv=5, scoring="neg_log_loss", max_iter=5000)
    cv.fit(z(np.vstack([Xtr, Xdv])), np.concatenate([ytr, ydv]))
    C = float(np.atleast_1d(cv.C_)[0])
    tuned = LogisticRegression(C=C, max_iter=5000).fit(z(Xtr), ytr).score(z(Xte), yte)
    default = LogisticRegression(C=1.0, max_iter=5000).fit(z(Xtr), ytr).score(z(Xte), yte)
    return float(tuned), float(default)


def _ours(Xtr, ytr, Xdv, ydv, Xte, yte, classes, **opt) -> float:
    fit = fit_probe(ArrayDataModule(Xtr, ytr, Xdv, ydv), classes, FitOptions(**opt))
    return float(np.mean(fit.predict(Xte) == yte))


def _synthetic(rng, n, d=384):
    """A sparse linear concept in correlated 384-d vectors with offsets and one wide neuron."""
    w = rng.normal(size=d) * (rng.random(d) < 0.05)
    X = rng.normal(size=(n, d)) @ (np.eye(d) + 0.1 * rng.normal(size=(d, d))) + 3 * rng.normal(size=d)
    X[:, 5] *= 30
    y = (((X - X.mean(0)) / X.std(0)) @ w + rng.normal(size=n) > 0).astype(int)
    return X.astype(np.float32), y


def test_small_n_default_probe_is_within_two_points_of_sklearn_on_synthetic_data():
    rng = np.random.default_rng(0)
    ours, tuned, default, old = [], [], [], []
    for n_train in (24, 36, 48, 60, 90, 120, 120, 240):
        X, y = _synthetic(rng, 2 * n_train + 400)
        tr, dv, te = np.split(np.arange(len(y)), [n_train, n_train + n_train // 3])
        parts = (X[tr], y[tr], X[dv], y[dv], X[te], y[te])
        ours.append(_ours(*parts, 2))
        t, d = _sklearn(*parts)
        tuned.append(t)
        default.append(d)
        old.append(_ours(*parts, 2, transform="whiten", select=False, l2=1e-5))  # the former default
    ours, tuned, default, old = map(np.mean, (ours, tuned, default, old))
    assert ours >= tuned - 0.02 and ours >= default - 0.02, (ours, tuned, default)
    assert old < ours - 0.05  # whitening with a fixed light L2 falls apart at n <= d: this test would catch it


@pytest.fixture(scope="module")
def ewt_store(tmp_path_factory):
    if not EWT.exists():
        pytest.skip(f"UD English EWT not found at {EWT}")
    import concepts.extraction.stage as extract_mod
    from concepts.extraction.store import ActivationStore

    ws = tmp_path_factory.mktemp("ewt-ws")
    cfg = compose_cfg("extract", [f"paths.workspace={ws}", "corpus.max_sentences=300", "corpus.splits=[dev]",
                                  f"corpus.path={EWT}", "extraction.progress=false", "extraction.device=cpu"])
    return ws, ActivationStore(extract_mod.run(cfg).store)


@needs_ewt
def test_small_n_probes_on_ewt_match_sklearn(ewt_store):
    """Binary tag-vs-rest tasks of tens of rows on MiniLM's layers 0 and 6 (384-d): the default
    probe against scikit-learn on the same rows."""
    _, store = ewt_store
    tokens = store.tokens()
    rng = np.random.default_rng(1)
    ours, tuned, default = [], [], []
    for layer in (0, 6):
        X_all = np.asarray(store.layer(layer), dtype=np.float32)
        for tag in ("NOUN", "VERB", "ADJ", "ADP", "PRON", "ADV"):
            pos = rng.choice(np.flatnonzero(tokens["upos"] == tag), 45, replace=False)
            neg = rng.choice(np.flatnonzero(tokens["upos"] != tag), 45, replace=False)
            rows = rng.permutation(np.concatenate([pos, neg]))
            y = np.isin(rows, pos).astype(int)
            tr, dv, te = np.split(np.arange(90), [40, 54])
            X = X_all[rows]
            parts = (X[tr], y[tr], X[dv], y[dv], X[te], y[te])
            ours.append(_ours(*parts, 2))
            t, d = _sklearn(*parts)
            tuned.append(t)
            default.append(d)
    ours, tuned, default = map(np.mean, (ours, tuned, default))
    assert ours >= tuned - 0.02 and ours >= default - 0.02, (ours, tuned, default)
    assert ours > 0.75


@needs_ewt
def test_concept_binary_probes_through_the_app_match_sklearn(ewt_store):
    """Concepts discovered and labelled on the EWT store (layer 6), one binary probe each through
    probing.train; scikit-learn on the very rows of each task."""
    import probing.train as train_mod
    from concepts.core.config import validate
    from concepts.discovery.stage import open_store
    from probing.config import TrainConfig
    from probing.labels import concept_binary_labels

    ws, store = ewt_store
    over = [f"paths.workspace={ws}", "corpus.max_sentences=300", "corpus.splits=[dev]", f"corpus.path={EWT}",
            "extraction.progress=false", "extraction.device=cpu", "sampling.min_count=2", "discovery.k=150",
            "discovery.layers=[6]", "labels=concept_binary", "labels.top=6", "labels.require_label=false", "layer=6"]
    import concepts.annotation.stage as annotate_mod

    annotate_mod.run(compose_cfg("annotate", [o for o in over if not o.startswith(("labels", "layer"))]))
    res = train_mod.run(compose_cfg("train", over))
    assert len(res.results) == 6
    cfg = validate(compose_cfg("train", over), TrainConfig)
    concepts = train_mod.ConceptSource(cfg, open_store(cfg))
    tasks = concept_binary_labels(store.tokens(), concepts.layer(6), 6, False, cfg.probing.min_examples,
                                  cfg.probing.seed, "x", cfg.labels.negatives, cfg.labels.min_rows, None,
                                  cfg.labels.positives, store.layer(6), cfg.labels.max_positives)
    scored = {r.task for r in res.results if r.skipped is None}
    assert len(scored) >= 3, [r.skipped for r in res.results]
    tasks = [ls for ls in tasks if ls.name in scored]
    X_all = np.asarray(store.layer(6), dtype=np.float32)
    sk, sizes = [], []
    for ls in tasks:
        assert len(ls) >= cfg.labels.min_rows  # small concepts get more negatives
        sizes.append(int((ls.y == ls.classes.index("other")).sum()) / max(int((ls.y != ls.classes.index("other")).sum()), 1))
        s = split_examples(ls, cfg.split.by, cfg.split.train, cfg.split.dev, cfg.split.seed)
        X = X_all[ls.rows]
        sk.append(_sklearn(X[s.train], ls.y[s.train], X[s.dev], ls.y[s.dev], X[s.test], ls.y[s.test]))
    assert all(v == pytest.approx(1.0) for v in sizes)  # the default is balanced: one negative per positive
    ours = np.mean([r.accuracy for r in res.results if r.skipped is None])
    tuned, default = np.mean(sk, axis=0)
    assert ours >= tuned - 0.02 and ours >= default - 0.02, (ours, tuned, default)
    for r in (r for r in res.results if r.skipped is None):  # every result carries its interval and baselines
        assert r.accuracy_low <= r.accuracy <= r.accuracy_high and r.n_test >= cfg.probing.min_test
        assert r.selectivity_low <= r.selectivity <= r.selectivity_high
        assert 0 <= r.lexical_accuracy <= 1 and 0 <= r.majority_accuracy <= 1 and r.C in C_GRID


def test_wilson_interval_matches_scipy_and_bootstrap_covers_the_difference():
    for k, n in ((8, 10), (0, 12), (37, 40), (500, 1000)):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        np.testing.assert_allclose(wilson(k, n), (ref.low, ref.high), atol=1e-6)
    rng = np.random.default_rng(0)
    a, b = rng.random(400) < 0.8, rng.random(400) < 0.5
    lo, hi = paired_bootstrap(a, b)
    assert lo < a.mean() - b.mean() < hi and hi - lo < 0.2
    lo, hi = paired_bootstrap(a, a)
    assert lo == hi == 0


def test_lexical_baseline_and_one_case_folded_word_type_rule():
    words = np.array(["The", "the", "dog", "Dog", "runs", "THE", "cat"])
    y = np.array([0, 0, 1, 1, 2, 1, 1])
    # the lookup: "the" -> 0 (2 of 3), "dog" -> 1, "runs" -> 2; unseen -> the training majority (1)
    pred = lexical_baseline(words[:6], y[:6], np.array(["THE", "DOG", "runs", "bird"]), 3)
    assert pred.tolist() == [0, 1, 2, 1]
    yc = control_labels(words, y, np.arange(7), 3, seed=0)
    assert yc[0] == yc[1] == yc[5] and yc[2] == yc[3]  # "The", "the", "THE": one type, one control label
    ls = LabelSet("t", np.arange(400), np.arange(400) % 2, ["a", "b"],
                  np.array([w if i % 2 else w.upper() for i, w in enumerate(f"w{i % 40}" for i in range(400))]),
                  np.arange(400))
    s = split_examples(ls, "type")
    assert not {w.casefold() for w in ls.words[s.train]} & {w.casefold() for w in ls.words[s.test]}


def test_edge_cases_are_clear_errors():
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    y = np.arange(50) % 2
    with pytest.raises(UserError, match="training split is empty"):
        fit_probe(ArrayDataModule(X[:0], y[:0]), 2, FitOptions())
    with pytest.raises(UserError, match="test split is empty"):
        evaluate(y[:0], y[:0], ["a", "b"])
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(UserError, match=r"NaN/inf value\(s\) \(first: row 7, neuron 2\)"):
        fit_probe(ArrayDataModule(bad, y), 2, FitOptions())
    bad[7, 2] = np.inf
    with pytest.raises(UserError, match="NaN/inf"):
        fit_probe(ArrayDataModule(bad, y), 2, FitOptions(select=False))


def test_paired_bootstrap_draws_what_resampling_the_rows_draws():
    """The interval from multinomial counts of the paired differences matches the textbook
    bootstrap (resampling row indices) and the normal approximation, on 0/1 hits and on scores."""
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    for a, b in ((rng.random(600) < 0.7, rng.random(600) < 0.55), (rng.random(300), rng.random(300) ** 2)):
        a, b = a.astype(float), b.astype(float)
        d = a - b
        idx = np.random.default_rng(1).integers(0, len(d), size=(20000, len(d)))
        ref = np.quantile(d[idx].mean(1), [0.025, 0.975])
        got = paired_bootstrap(a, b, n_boot=20000, seed=2)
        np.testing.assert_allclose(got, ref, atol=0.006)
        half = norm.ppf(0.975) * d.std() / np.sqrt(len(d))
        np.testing.assert_allclose(got, (d.mean() - half, d.mean() + half), atol=0.008)
        assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)  # seeded
