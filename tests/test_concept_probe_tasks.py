"""Concept probes that can measure the concept: stratified splits, positives by nearest centroid,
sentence-bootstrap intervals, the lexical baseline and the flags, each against an independent
reference (scipy, scikit-learn, a plain loop)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import balanced_accuracy_score

from probing.config import ProbingConfig, SplitConfig, TrainConfig
from probing.data import LabelSet, split_examples
from probing.labels import assign_to_concepts
from probing.stats import balanced_accuracy, lexical_accuracy, sentence_bootstrap, wilson
from probing.train import result_flags


def _labels(y, sentences, words=None) -> LabelSet:
    y = np.asarray(y)
    words = np.asarray(words if words is not None else [f"w{i}" for i in range(len(y))], dtype=object)
    return LabelSet("t", np.arange(len(y)), y, [str(c) for c in range(int(y.max()) + 1)], words, np.asarray(sentences))


def _rare_class_task(rng, n_sent=400, per=10, rare_sentences=8):
    """Class 1 in only `rare_sentences` sentences (one token each): a concept with few positives."""
    sentences = np.repeat(np.arange(n_sent), per)
    y = np.zeros(len(sentences), dtype=np.int64)
    for s in rng.choice(n_sent, rare_sentences, replace=False):
        y[s * per] = 1
    return _labels(y, sentences)


def test_stratified_split_puts_a_rare_class_in_every_part_for_every_seed():
    rng = np.random.default_rng(0)
    missing_plain = 0
    for seed in range(40):
        ls = _rare_class_task(rng)
        s = split_examples(ls, "sentence", 0.6, 0.2, seed)
        for part in (s.train, s.dev, s.test):
            assert (ls.y[part] == 1).sum() >= 1
        # 8 rare sentences dealt 60/20/20: train 4-6, dev and test 1-2 each
        assert 4 <= (ls.y[s.train] == 1).sum() <= 6 and (ls.y[s.test] == 1).sum() <= 3
        # no sentence in two parts, every row in one part
        parts = [set(ls.sentences[p]) for p in (s.train, s.dev, s.test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert sorted(np.concatenate([s.train, s.dev, s.test]).tolist()) == list(range(len(ls)))
        # the whole keeps its shares
        assert abs(len(parts[0]) / 400 - 0.6) < 0.02 and abs(len(parts[2]) / 400 - 0.2) < 0.02
        plain = split_examples(ls, "sentence", 0.6, 0.2, seed, stratify=False)
        missing_plain += int((ls.y[plain.test] == 1).sum() == 0)
    assert missing_plain >= 3  # the unstratified cut often leaves test without a positive (the 0-positive task)


def test_stratified_type_split_keeps_types_apart_and_spreads_each_label():
    rng = np.random.default_rng(1)
    types = rng.integers(0, 300, 5000)
    y = (types % 7 == 0).astype(np.int64)  # a label that is a property of the type
    words = np.array([f"t{t}" if i % 2 else f"T{t}" for i, t in enumerate(types)], dtype=object)  # case varies
    ls = _labels(y, np.arange(5000) // 10, words)
    s = split_examples(ls, "type", 0.6, 0.2, 3)
    tr, te = {w.casefold() for w in words[s.train]}, {w.casefold() for w in words[s.test]}
    assert not tr & te
    n_pos_types = len({t for t in types if t % 7 == 0})
    pos_test_types = len({w.casefold() for w, v in zip(words[s.test], y[s.test]) if v})
    assert abs(pos_test_types - 0.2 * n_pos_types) <= 1.5


def test_assign_to_concepts_matches_a_brute_force_nearest_centroid():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3000, 16)).astype(np.float32)
    members = [sorted(rng.choice(3000, 20, replace=False).tolist()) for _ in range(7)]
    members = [[r for r in m if all(r not in o for o in members[:i])] for i, m in enumerate(members)]
    got = assign_to_concepts(X, members, chunk=700)
    cent = np.stack([X[m].mean(0) for m in members])
    ref = cdist(X, cent).argmin(1)
    for i, m in enumerate(members):
        ref[m] = i  # a member stays in its concept
    np.testing.assert_array_equal(got, ref)


def test_sentence_bootstrap_equals_a_plain_resampling_loop():
    rng = np.random.default_rng(3)
    sentences = np.repeat(np.arange(60), rng.integers(1, 12, 60))
    n = len(sentences)
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    yc = rng.integers(0, 3, n)
    cpred = np.where(rng.random(n) < 0.4, yc, rng.integers(0, 3, n))
    got = sentence_bootstrap(sentences, y, pred, yc, cpred, n_boot=4000, seed=0)
    # reference: draw 60 sentences with replacement, pool their tokens, score
    accs, sels, bals = [], [], []
    uniq = np.unique(sentences)
    by = {s: np.flatnonzero(sentences == s) for s in uniq}
    r2 = np.random.default_rng(99)
    for _ in range(4000):
        idx = np.concatenate([by[s] for s in r2.choice(uniq, len(uniq))])
        a = np.mean(pred[idx] == y[idx])
        accs.append(a)
        sels.append(a - np.mean(cpred[idx] == yc[idx]))
        bals.append(balanced_accuracy_score(y[idx], pred[idx]))
    for mine, ref in ((got.accuracy, accs), (got.selectivity, sels), (got.balanced_accuracy, bals)):
        np.testing.assert_allclose(mine, np.quantile(ref, [0.025, 0.975]), atol=0.02)


def test_sentence_bootstrap_is_wider_than_wilson_when_a_sentence_agrees_with_itself():
    rng = np.random.default_rng(4)
    sentences = np.repeat(np.arange(200), 10)
    hit_by_sentence = rng.random(200) < 0.8  # all tokens of a sentence right, or all wrong
    y = np.zeros(2000, dtype=np.int64)
    pred = np.where(np.repeat(hit_by_sentence, 10), 0, 1)
    boot = sentence_bootstrap(sentences, y, pred, seed=1)
    w = wilson(int((pred == y).sum()), 2000)
    ratio = (boot.accuracy[1] - boot.accuracy[0]) / (w[1] - w[0])
    assert 2.5 < ratio < 4.0  # about sqrt(10): 200 independent units, not 2,000
    # one token per sentence: the two agree
    one = sentence_bootstrap(np.arange(2000), y, pred, seed=1)
    assert abs((one.accuracy[1] - one.accuracy[0]) / (w[1] - w[0]) - 1) < 0.1


def test_balanced_accuracy_equals_scikit_learn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 500)
    pred = np.where(rng.random(500) < 0.6, y, rng.integers(0, 4, 500))
    assert balanced_accuracy(y, pred) == pytest.approx(balanced_accuracy_score(y, pred))


def test_lexical_baseline_is_the_stronger_of_case_folded_and_case_sensitive():
    # "US" (the country, a proper noun) vs "us" (a pronoun): only a case-sensitive lookup tells them apart
    train_w = np.array(["US", "US", "us", "us", "us", "The", "the"], dtype=object)
    train_y = np.array([1, 1, 0, 0, 0, 2, 2])
    test_w = np.array(["US", "us", "the", "US"], dtype=object)
    test_y = np.array([1, 0, 2, 1])
    acc, pred = lexical_accuracy(train_w, train_y, test_w, test_y, 3)
    assert acc == 1.0 and pred.tolist() == [1, 0, 2, 1]
    # where case folding wins (an unseen capitalised form of a seen word), it is taken
    acc2, _ = lexical_accuracy(np.array(["dog", "dog", "cat"], dtype=object), np.array([1, 1, 0]),
                               np.array(["Dog", "DOG", "cat"], dtype=object), np.array([1, 1, 0]), 2)
    assert acc2 == 1.0


@pytest.mark.parametrize("case, expect", [
    (dict(acc=0.71, ci=(0.69, 0.73), lexical=0.60, majority=0.868, sel=(0.1, 0.2), per={"a": 50, "b": 50}),
     {"below_majority"}),
    (dict(acc=0.90, ci=(0.88, 0.92), lexical=0.89, majority=0.5, sel=(0.1, 0.2), per={"a": 50, "b": 50}),
     {"below_lexical"}),
    (dict(acc=0.90, ci=(0.88, 0.92), lexical=0.70, majority=0.5, sel=(-0.01, 0.2), per={"a": 50, "b": 5}),
     {"not_selective", "few_positives"}),
    (dict(acc=0.90, ci=(0.88, 0.92), lexical=0.70, majority=0.5, sel=(None, None), per={"a": 50, "b": 50}), set()),
])
def test_flags_name_every_way_a_number_misleads(case, expect):
    cfg = TrainConfig(probing=ProbingConfig(min_test_class=20), split=SplitConfig())
    got = result_flags(cfg, case["acc"], case["ci"], case["lexical"], case["majority"], case["sel"], case["per"])
    assert set(got) == expect
