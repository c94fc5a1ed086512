"""probe_weights ranks the weights of probing's own probe (`probing.fit.fit_probe` with the run's
FitOptions: L-BFGS to convergence on z-scored inputs, C chosen on held-out rows), checked
against scikit-learn's logistic regression at the C the probe chose, on synthetic activations
with correlated neurons of mixed scales and 20 informative ones of graded strength."""

import numpy as np
import pytest
from helpers import compose_cfg

from concepts.core.config import validate
from neurons.config import RankConfig
from neurons.rankers import ProbeWeights, make_ranker, weight_scores
from probing.fit import FitOptions
from probing.regularization import C_GRID


def synthetic(n: int, d: int, k: int, informative: int = 20, seed: int = 0):
    """(X [n, d] float32, y [n], the informative neurons): every neuron loads on 8 shared factors
    (correlated neurons) and has its own scale (0.5-5); `informative` of them carry the class,
    with strengths from 1.2 down to 0.15 (geometric)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    shared = rng.normal(size=(n, 8)) @ (0.6 * rng.normal(size=(8, d)))
    X = rng.normal(size=(n, d)) + shared
    idx = rng.choice(d, informative, replace=False)
    X[:, idx] += np.geomspace(1.2, 0.15, informative) * rng.normal(size=(k, informative))[y]
    X *= rng.uniform(0.5, 5, d)
    return X.astype(np.float32), y, idx


def sklearn_coef(X: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    """scikit-learn's coefficients on the same rows, z-scored (sd over the rows, as the probe's)."""
    from sklearn.linear_model import LogisticRegression

    X = X.astype(np.float64)
    Z = (X - X.mean(0)) / X.std(0)
    return LogisticRegression(C=C, tol=1e-8, max_iter=20000).fit(Z, y).coef_


def hand_overall(W: np.ndarray) -> np.ndarray:
    """The documented overall score, by hand: sum over classes of |w_c| / max|w_c|."""
    A = np.abs(W)
    return (A / A.max(1, keepdims=True)).sum(0)


def top10(scores: np.ndarray) -> set:
    return set(np.argsort(-scores, kind="stable")[:10].tolist())


def _ranked(k: int):
    X, y, informative = synthetic(n=800, d=120, k=k, seed=10 + k)
    r = ProbeWeights().rank(X, y, [f"c{i}" for i in range(k)])  # the probing default probe
    return k, X, y, informative, r


@pytest.fixture(scope="module")
def binary():
    return _ranked(2)


@pytest.fixture(scope="module")
def multiclass():
    return _ranked(5)


@pytest.mark.parametrize("problem", ["binary", "multiclass"])
def test_top10_agrees_with_sklearn_at_the_probes_own_C(problem, request):
    k, X, y, informative, r = request.getfixturevalue(problem)
    probe = r.meta["probe"]
    assert probe["C"] in C_GRID and probe["selected_by"].startswith("cv") and probe["converged"]
    W = sklearn_coef(X, y, probe["C"])
    reference = np.abs(W[0]) if k == 2 else hand_overall(W)  # binary: scikit-learn's one coefficient vector
    shared = len(top10(r.overall) & top10(reference))
    assert shared >= 9, f"{k} classes, C={probe['C']}: the top 10 shares {shared} neurons with scikit-learn's"
    assert len(top10(r.overall) & set(informative.tolist())) >= 8  # and it finds the informative neurons


def test_binary_rows_are_mirror_images_and_rank_by_the_weight_difference(binary):
    k, X, y, _, r = binary
    np.testing.assert_allclose(r.scores[0], r.scores[1], rtol=1e-5, atol=1e-7)
    # overall = 2 |w| / max|w|: the order of |w_1 - w_0|, each class's own order too
    np.testing.assert_allclose(r.overall, 2 * r.scores[1] / r.scores[1].max(), rtol=1e-5)
    assert r.order().tolist() == r.order(1).tolist()


def test_multiclass_overall_equals_a_hand_computation_from_sklearn(multiclass):
    k, X, y, _, r = multiclass
    W = sklearn_coef(X, y, r.meta["probe"]["C"])  # [k, d], multinomial: centred over classes at the optimum
    hand = hand_overall(W)
    np.testing.assert_allclose(r.overall, hand, atol=0.002 * hand.max())  # measured: 2e-4
    np.testing.assert_allclose(r.scores, np.abs(W), atol=0.002 * np.abs(W).max())
    for c in range(k):  # each class's own order
        assert len(top10(r.scores[c]) & top10(np.abs(W[c]))) >= 9


def test_the_weights_follow_the_probe_config():
    """A C grid that forces another C gives other weights, and the ranking records the C used."""
    X, y, _ = synthetic(n=500, d=60, k=3, seed=3)
    classes = ["a", "b", "c"]
    strong = ProbeWeights(fit=FitOptions(c_grid=(0.001,))).rank(X, y, classes)
    weak = ProbeWeights(fit=FitOptions(c_grid=(10.0,))).rank(X, y, classes)
    assert strong.meta["probe"]["C"] == 0.001 and weak.meta["probe"]["C"] == 10.0
    assert not np.allclose(strong.scores, weak.scores, rtol=0.05)
    assert strong.scores.max() < weak.scores.max() / 5  # the strong penalty shrinks the weights
    np.testing.assert_allclose(weak.scores, np.abs(sklearn_coef(X, y, 10.0)), atol=0.01 * weak.scores.max())
    fixed = ProbeWeights(fit=FitOptions(select=False, l2=1e-3)).rank(X, y, classes)
    assert fixed.meta["probe"]["C"] is None and fixed.meta["probe"]["l2"] == pytest.approx(1e-3)
    assert fixed.meta["probe"]["selected_by"] == "fixed"


def test_weight_scores_by_hand():
    # a common vector added to every class's weights changes no prediction: it is removed
    W = np.array([[1.0, -2.0, 0.5], [-1.0, 2.0, -0.5]]) + np.array([[0.3, 0.3, -0.1]])
    per, overall = weight_scores(W)
    np.testing.assert_allclose(per, [[1, 2, 0.5], [1, 2, 0.5]])
    np.testing.assert_allclose(overall, [1.0, 2.0, 0.5])
    W3 = np.array([[2.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]])  # centred already
    per, overall = weight_scores(W3, present=np.array([True, True, False]))
    np.testing.assert_allclose(per, [[2, 0], [1, 1], [0, 0]])
    np.testing.assert_allclose(overall, [1 + 1, 0 + 1])  # the class without rows is left out


def test_a_class_without_rows_gets_no_weights():
    X, y, _ = synthetic(n=300, d=40, k=3, seed=4)
    r = ProbeWeights(fit=FitOptions(c_grid=(0.1,))).rank(X, y, ["a", "b", "c", "unseen"])
    assert not r.scores[3].any() and r.scores[:3].all()
    same = ProbeWeights(fit=FitOptions(c_grid=(0.1,))).rank(X, y, ["a", "b", "c"])
    np.testing.assert_allclose(r.overall, same.overall, rtol=1e-5)


def test_rank_probe_is_the_ranking_of_the_probe_it_is_given():
    """The command line ranks the probe it then ablates (`rank_probe`); the same rows and
    options give the library's ranking."""
    X, y, _ = synthetic(n=400, d=50, k=3, seed=5)
    ranker = ProbeWeights(fit=FitOptions(c_grid=(0.03, 0.3)))
    probe = ranker.train(X, y, 3)
    r = ranker.rank_probe(probe, ["a", "b", "c"], meta={"unit": "x"})
    lib = ranker.rank(X, y, ["a", "b", "c"])
    np.testing.assert_allclose(r.scores, lib.scores, rtol=1e-4, atol=1e-6)
    assert r.meta["probe"] == lib.meta["probe"] and r.meta["unit"] == "x"


def test_the_cli_gives_probe_weights_the_run_probe_and_its_identity_holds_it():
    import neurons.rank as rank_mod

    def cfg(*over):
        return validate(compose_cfg("rank", ["ranking=probe_weights", *over]), RankConfig)

    base = cfg()
    ranker = rank_mod.ranker_for(base)
    assert isinstance(ranker, ProbeWeights) and ranker.fit == FitOptions()  # the probing default
    assert rank_mod.ranker_for(cfg("probe.c_grid=[0.5]")).fit.c_grid == (0.5,)
    ident = lambda c: rank_mod.ranking_identity(c, "store", None)  # noqa: E731
    assert ident(cfg("probe.c_grid=[0.5]")) != ident(base)
    assert ident(cfg("probe.l1=0.01")) != ident(base)
    assert ident(cfg("ranking.l1=0.1")) == ident(base)  # the removed options are ignored
    # other methods: the ranking does not read the probe; the evaluation (retrained, ablated probes) does
    pl = lambda *o: validate(compose_cfg("rank", ["ranking=probeless", *o]), RankConfig)  # noqa: E731
    assert ident(pl("probe.c_grid=[0.5]")) == ident(pl())
    assert rank_mod.evaluation_identity(pl("probe.c_grid=[0.5]")) != rank_mod.evaluation_identity(pl())
    off = ("neurons.retrain=false", "neurons.ablation=false")
    assert rank_mod.evaluation_identity(pl("probe.c_grid=[0.5]", *off)) == rank_mod.evaluation_identity(pl(*off))


def test_probe_weights_needs_a_linear_probe():
    from concepts.core.errors import UserError

    with pytest.raises(UserError, match="probe=linear"):
        ProbeWeights(fit=FitOptions(kind="mlp"))
    with pytest.raises(UserError, match="FitOptions"):
        make_ranker("probe_weights", fit={"C": 1.0})
