"""The Python API is as safe as the command line: `make_ranker(name)` ranks as
`python -m neurons.rank ranking=<name>` does (one source of defaults), and rankers and
evaluators refuse bad input with a `UserError` of one line that names the problem and the fix."""

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_cfg
from omegaconf import OmegaConf

from concepts.core.config import validate
from concepts.core.errors import UserError
from neurons.config import NeuronsConfig, RankConfig, RankingConfig
from neurons.evaluate import (
    Data,
    ablation,
    overlap_table,
    resolve_ks,
    retrain_curve,
    super_sub_overlap,
)
from neurons.rankers import DEFAULTS, RANKERS, make_ranker
from neurons.ranking import Ranking
from probing.data import ArrayDataModule
from probing.fit import FitOptions, fit_probe

CONF = Path(__file__).resolve().parent.parent / "conf"
# conf/ranking/<file>.yaml keys whose purpose is to change a default (say why in the yaml too):
# none today. `method` is every file's purpose.
PURPOSE = {}


# ------------------------------------------------------------------ one source of defaults

@pytest.mark.parametrize("name", sorted(RANKERS))
def test_a_notebook_ranker_equals_the_cli_ranker(name):
    import neurons.rank as rank_mod

    cfg = validate(compose_cfg("rank", [f"ranking={name}"]), RankConfig)
    cli, notebook = rank_mod.ranker_for(cfg), make_ranker(name)
    assert type(cli) is type(notebook)
    assert vars(cli) == vars(notebook), f"make_ranker({name!r}) defaults differ from the CLI's"
    assert notebook.standardize is True  # a wide uninformative neuron cannot lead by default


def test_every_ranker_and_the_config_take_their_defaults_from_one_place():
    fields = {f.name: f.default for f in dataclasses.fields(RankingConfig)}
    for key, value in DEFAULTS.items():
        if key in fields:
            assert fields[key] == value, f"RankingConfig.{key}={fields[key]!r}, the rankers' default is {value!r}"
    for name, cls in RANKERS.items():
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name in DEFAULTS:
                assert p.default == DEFAULTS[p.name], f"{name}: {p.name}={p.default!r} is not DEFAULTS[{p.name!r}]"


def test_the_ranking_yaml_files_do_not_contradict_the_defaults():
    files = sorted((CONF / "ranking").glob("*.yaml"))
    assert {f.stem for f in files} == set(RANKERS)
    defaults = {f.name: f.default for f in dataclasses.fields(RankingConfig)}
    for f in files:
        values = OmegaConf.to_container(OmegaConf.load(f))
        assert values.pop("method") == f.stem
        for key, value in values.items():
            assert key in defaults, f"{f.name}: {key} is no ranking option"
            if key not in PURPOSE.get(f.stem, ()):
                assert value == defaults[key], f"{f.name}: {key}={value!r}, the default is {defaults[key]!r}"


def test_the_neurons_yaml_equals_the_dataclass_defaults():
    values = OmegaConf.to_container(OmegaConf.load(CONF / "neurons" / "default.yaml"))
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(NeuronsConfig)}
    assert set(values) <= set(defaults)
    for key, value in values.items():
        assert value == defaults[key], f"conf/neurons/default.yaml: {key}={value!r}, the default is {defaults[key]!r}"


def test_old_configs_with_the_removed_probe_options_still_load(caplog):
    with caplog.at_level("WARNING", logger="neurons.config"):
        cfg = validate(compose_cfg("rank", ["ranking=probe_weights", "ranking.l1=1e-4", "ranking.epochs=5"]),
                       RankConfig)
    assert cfg.ranking.method == "probe_weights"
    assert "ranking.l1=0.0001, ranking.epochs=5: no longer used" in caplog.text and "probe.*" in caplog.text


# ------------------------------------------------------------------ rankers refuse bad input

def good(n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 1] += y
    return X, y


def _nan(X):
    X = X.copy()
    X[4, 2] = np.nan
    return X


def _inf(X):
    X = X.copy()
    X[7, 0] = np.inf
    return X


X0, Y0 = good()
ABC = ["a", "b", "c"]
BAD_RANKER_INPUTS = [  # (id, X, y, classes, neurons, message)
    ("nan", _nan(X0), Y0, ABC, None, r"NaN/inf value\(s\) \(first: row 4, neuron 2\)"),
    ("inf", _inf(X0), Y0, ABC, None, "NaN/inf"),
    ("1-d X", X0[0], Y0[:1], ABC, None, r"2-d array \[rows, neurons\]; got shape \(8,\)"),
    ("3-d X", X0[None], Y0, ABC, None, "2-d array"),
    ("text X", np.array([["a", "b"]] * 4), Y0[:4], ABC, None, "array of numbers"),
    ("no rows", X0[:0], Y0[:0], ABC, None, "no rows to rank"),
    ("no neurons", X0[:, :0], Y0, ABC, None, "no neurons to rank"),
    ("labels too short", X0, Y0[:-1], ABC, None, "labels have length 59 but the activations have 60 rows"),
    ("2-d labels", X0, Y0[:, None], ABC, None, "1-d array"),
    ("label too large", X0, np.where(Y0 == 2, 3, Y0), ABC, None, r"class indices in \[0, 3\)"),
    ("negative label", X0, np.where(Y0 == 2, -1, Y0), ABC, None, r"class indices in \[0, 3\)"),
    ("fractional labels", X0, Y0 + 0.5, ABC, None, "class indices"),
    ("text labels", X0, np.array(ABC)[Y0], ABC, None, "class indices"),
    ("one class", X0, np.zeros(60, int), ABC, None, "at least two classes; the rows hold only 'a'"),
    ("one class name", X0, np.zeros(60, int), ["a"], None, "at least two class names"),
    ("repeated class names", X0, Y0, ["a", "b", "a"], None, "class names must be distinct"),
    ("neuron names", X0, Y0, ABC, ["n0", "n1"], "2 neuron names for 8 neurons"),
]


@pytest.mark.parametrize("name", sorted(RANKERS))
@pytest.mark.parametrize("case", BAD_RANKER_INPUTS, ids=[c[0] for c in BAD_RANKER_INPUTS])
def test_rankers_refuse_bad_input(name, case):
    _, X, y, classes, neurons, message = case
    with pytest.raises(UserError, match=message) as e:
        make_ranker(name).rank(X, y, classes, neurons)
    assert "\n" not in str(e.value)


def test_a_class_of_one_row_is_refused_where_it_matters():
    X, y = good()
    y = y.copy()
    y[y == 2] = 1
    y[0] = 2  # class "c" has one row
    with pytest.raises(UserError, match="class 'c' has 1 row.*at least 2"):
        make_ranker("gaussian").rank(X, y, ABC)  # a variance per class
    for name in ("probeless", "probeless_ovr", "iou", "random"):
        assert make_ranker(name).rank(X, y, ABC).dim == 8


def test_labels_as_whole_floats_or_bools_are_accepted():
    X, y = good()
    a = make_ranker("probeless").rank(X, y.astype(float), ABC)
    assert a.order().tolist() == make_ranker("probeless").rank(X, y, ABC).order().tolist()
    assert make_ranker("probeless").rank(X, y == 1, ["rest", "b"]).dim == 8


@pytest.mark.parametrize("name,params,message", [
    ("probeless", {"l1": 0.1}, "ranking 'probeless' has no option l1; it takes standardize"),
    ("nope", {}, "ranking.method='nope': use one of probeless"),
    ("iou", {"quantile": 1.5}, r"quantile=1.5 must be in \(0, 1\)"),
    ("gaussian", {"select": 0}, "select=0 must be a whole number >= 1"),
    ("probeless", {"standardize": "yes"}, "standardize='yes': use true or false"),
    ("probe_weights", {"polish": -1}, "polish=-1 must be a tolerance > 0"),
    ("probe_weights", {"fit": FitOptions(kind="mlp")}, "probe=linear"),
])
def test_bad_ranker_options(name, params, message):
    with pytest.raises(UserError, match=message):
        make_ranker(name, **params)


def test_ks_larger_than_the_neurons():
    X, y = good()
    r = make_ranker("probeless").rank(X, y, ABC)
    with pytest.raises(UserError, match="k=9 must be between 1 and the 8 neurons"):
        r.top(9)


# ------------------------------------------------------------------ evaluators refuse bad input

@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(1)
    n, d = 300, 12
    y = np.arange(n) % 3
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 4] += 2 * y
    data = Data(X[:200], y[:200], X[200:], y[200:], 3)
    ranking = make_ranker("probeless").rank(data.X_train, data.y_train, ABC)
    opt = FitOptions(select=False, l2=1e-3)
    fit = fit_probe(ArrayDataModule(data.X_train, data.y_train), 3, opt)
    return data, ranking, fit, opt


def test_the_evaluators_run_on_good_input(setup):
    data, ranking, fit, opt = setup
    assert {r["k"] for r in ablation(ranking, fit, data, [1, "50%"])} == {1, 6}
    rows = retrain_curve(ranking, data, [2], opt)
    assert {r["neurons"] for r in rows} == {"top", "random", "bottom"}


def _replace(data, **kw):
    return dataclasses.replace(data, **kw)


BAD_EVAL = [  # (id, change to (data, ranking, ks), message)
    ("k above d", lambda d, r: (d, r, [13]), "k=13 is outside 1..12"),
    ("k zero", lambda d, r: (d, r, [0]), "k=0 is outside 1..12"),
    ("k over 100%", lambda d, r: (d, r, ["150%"]), "outside 1..12"),
    ("k fraction", lambda d, r: (d, r, [2.5]), "k=2.5 is neither a count"),
    ("k word", lambda d, r: (d, r, ["many"]), "k='many' is neither a count"),
    ("k bool", lambda d, r: (d, r, [True]), "neither a count"),
    ("no ks", lambda d, r: (d, r, []), "no k given"),
    ("ranking of other neurons", lambda d, r: (_replace(d, X_train=d.X_train[:, :10], X_test=d.X_test[:, :10]), r, [2]),
     "have 10 neurons but the ranking ranks 12"),
    ("test of other neurons", lambda d, r: (_replace(d, X_test=d.X_test[:, :10]), r, [2]),
     "test inputs have 10 neurons"),
    ("labels short", lambda d, r: (_replace(d, y_train=d.y_train[:-3]), r, [2]),
     "training split has 200 rows but labels of shape"),
    ("1-d inputs", lambda d, r: (_replace(d, X_test=d.X_test[:, 0]), r, [2]), "test inputs must be 2-d"),
    ("empty test", lambda d, r: (_replace(d, X_test=d.X_test[:0], y_test=d.y_test[:0]), r, [2]), "test split is empty"),
    ("nan", lambda d, r: (_replace(d, X_test=_nan(d.X_test)), r, [2]), "the test inputs hold 1 NaN/inf"),
    ("label range", lambda d, r: (_replace(d, y_test=d.y_test + 1), r, [2]), r"class ids in \[0, 3\)"),
    ("one class", lambda d, r: (_replace(d, y_train=np.zeros_like(d.y_train)), r, [2]), "one class only"),
    ("classes", lambda d, r: (_replace(d, classes=1), r, [2]), "Data.classes=1 must be the number of classes"),
    ("ranking nan", lambda d, r: (d, dataclasses.replace(r, overall=np.full(12, np.nan, np.float32)), [2]),
     "overall scores hold NaN/inf"),
    ("ranking shape", lambda d, r: (d, dataclasses.replace(r, overall=r.overall[:5]), [2]), "one per neuron"),
    ("not a ranking", lambda d, r: (d, "probeless", [2]), "expected a neurons.ranking.Ranking"),
]


@pytest.mark.parametrize("evaluator", ["retrain", "ablation"])
@pytest.mark.parametrize("case", BAD_EVAL, ids=[c[0] for c in BAD_EVAL])
def test_evaluators_refuse_bad_input(setup, evaluator, case):
    data, ranking, fit, opt = setup
    _, change, message = case
    d, r, ks = change(data, ranking)
    with pytest.raises(UserError, match=message) as e:
        if evaluator == "retrain":
            retrain_curve(r, d, ks, opt)
        else:
            ablation(r, fit, d, ks)
    assert "\n" not in str(e.value)


def test_ablation_refuses_a_probe_of_other_neurons_or_classes(setup):
    data, ranking, fit, opt = setup
    other = fit_probe(ArrayDataModule(data.X_train[:, :5], data.y_train), 3, opt)
    with pytest.raises(UserError, match="trained on 5 neurons but the ranking ranks 12"):
        ablation(ranking, other, data, [2])
    four = fit_probe(ArrayDataModule(data.X_train, data.y_train), 4, opt)
    with pytest.raises(UserError, match="the probe has 4 classes but the data 3"):
        ablation(ranking, four, data, [2])
    with pytest.raises(UserError, match="needs the trained probe"):
        ablation(ranking, opt, data, [2])
    with pytest.raises(UserError, match="use mean or zero"):
        ablation(ranking, fit, data, [2], value="median")
    with pytest.raises(UserError, match="seed=-1"):
        ablation(ranking, fit, data, [2], seed=-1)
    with pytest.raises(UserError, match="FitOptions"):
        retrain_curve(ranking, data, [2], {"l2": 1e-3})


def test_overlap_and_super_sub_refuse_bad_input(setup):
    data, ranking, fit, opt = setup
    other = Ranking("iou", ABC, [f"x{i}" for i in range(12)], ranking.scores, ranking.overall)
    with pytest.raises(UserError, match="rank different neurons"):
        overlap_table({"probeless": ranking, "iou": other}, 5)
    with pytest.raises(UserError, match="outside 1..12"):
        overlap_table({"probeless": ranking, "random": dataclasses.replace(ranking, method="random")}, 20)
    ranker = make_ranker("probeless")
    m = np.zeros(200, bool)
    m[:20] = True
    with pytest.raises(UserError, match=r"neurons.top=13 must be a whole number in 1..12"):
        super_sub_overlap(ranker, data.X_train, {"sup": {"s": m}}, top=13)
    with pytest.raises(UserError, match="must be a boolean mask of the 200 rows"):
        super_sub_overlap(ranker, data.X_train, {"sup": {"s": m[:100]}}, top=3)
    with pytest.raises(UserError, match="must be a boolean mask"):
        super_sub_overlap(ranker, data.X_train, {"sup": {"s": m.astype(int)}}, top=3)
    with pytest.raises(UserError, match="NaN/inf"):
        super_sub_overlap(ranker, _nan(data.X_train), {"sup": {"s": m}}, top=3)


def test_resolve_ks():
    assert resolve_ks([5, "50%", 5], 40) == [5, 20]
    assert resolve_ks("10%", 40) == [4] and resolve_ks(3, 40) == [3] and resolve_ks([np.int64(2), 4.0], 40) == [2, 4]
