"""Conformance of `concepts.api.extract` across 17 model families (tiny local replicas built by
`families.build`), against the independent word-vector reference of `word_reference`.

Each family is built once per test module. For every family: running texts with UD-style words
(contractions split without a space, abbreviations, numbers, quotes, hyphens, accents, CJK,
emoji), a padded batch of very different lengths, a long sentence cut into windows, pre-split
words input, and the `shared` / `n_subwords` columns.
"""

from __future__ import annotations

import numpy as np
import pytest
from families import FAMILIES, LOADED_CLASS, MODEL_TYPE, build
from word_reference import (
    AGGREGATIONS,
    align,
    pick_window,
    plan_windows,
    reference_all,
    running_text,
    tokenizer,
)

TOL = 1e-4

# ---------------------------------------------------------------------------------------------
# test sentences

# UD-style: words separated by spaces; "_" glues two words written with no space between them
UD_SENTENCES = [
    "I do_n't think it_'s worth 2,000 dollars_.",
    "She got her Ph.D. in the U.S. last year_.",
    '"_Well_,_" he said_, "_that_\'s not what I expected_._"',
    "We met at a small café in Zürich_; it was naïve of us_.",
    "The well_-_known author ca_n't stop writing_!",
    "My flight to 東京 leaves at 10:45 🙂",
    "Prices rose from $_1,200 to $_1,450 (_about 20_%_)_.",
    "Dr. Smith_'s résumé lists 3 languages_: English_, French and Japanese_.",
    "The 🚀 launch in Kraków was a success_.",
    "U.S. officials did_n't comment_.",
    "東京 is big_.",
    "Do_n't stop_!",
    "Hello",
    "You_'re right_, it_'s later than I thought_.",
    "Self_-_driving cars_, e_-_mail and co_-_operation are here_.",
    "In 2021_, 40,000 people came to see the naïve café owner_'s 12.5_% discount_.",
]


def ud_words(line: str) -> tuple[list[str], list[bool]]:
    words, space_after = [], []
    for chunk in line.split(" "):
        parts = chunk.split("_")
        words += parts
        space_after += [False] * (len(parts) - 1) + [True]
    return words, space_after


def ud_sentence(line: str):
    from concepts.corpus import Sentence

    words, space_after = ud_words(line)
    text, spans = running_text(words, space_after)
    return Sentence(words, text=text, offsets=spans)


def real_sentences() -> list:
    """The `Sentence` objects of `UD_SENTENCES`, plus one whose text has a double space and a
    trailing space (whitespace-only tokens)."""
    from concepts.corpus import Sentence

    out = [ud_sentence(line) for line in UD_SENTENCES]
    text = "Wait  for it ,  please . "
    out.append(Sentence(["Wait", "for", "it", ",", "please", "."], text=text,
                        offsets=[(0, 4), (6, 9), (10, 12), (13, 14), (16, 22), (23, 24)]))
    return out


_FILLER = ("the cat sat on the mat and then the old dog from Zürich did n't bark at 2,000 birds in the U.S. "
           "while a naïve café owner with a Ph.D. watched 東京 news 🙂 every day").split()


def padded_batch() -> list:
    """~40 sentences of very different lengths (1 to ~120 words), as strings, word lists and
    `Sentence` objects."""
    out: list = []
    lengths = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 120, 4, 7, 1, 16, 40, 9, 2, 70, 11]
    for i, n in enumerate(lengths):
        words = [_FILLER[(i * 7 + k) % len(_FILLER)] for k in range(n)]
        out.append(" ".join(words) if i % 2 == 0 else words)
    out += [ud_sentence(line) for line in UD_SENTENCES]
    out += ["Dogs bark .", "A", "It 's 10:45 and the café is closed .", " ".join(_FILLER * 2)]
    return out


def long_sentence():
    """One Sentence of ~190 words (several windows at max_length=64)."""
    lines = UD_SENTENCES[:6] + UD_SENTENCES[7:8] + UD_SENTENCES[13:]
    words, space_after = [], []
    for _ in range(3):
        for line in lines:
            w, s = ud_words(line)
            words += w
            space_after += s
    from concepts.corpus import Sentence

    text, spans = running_text(words, space_after)
    return Sentence(words, text=text, offsets=spans)


def text_and_spans(item) -> tuple[list[str], str, list[tuple[int, int]]]:
    """(words, running text, spans) of one input of `extract`."""
    if isinstance(item, str):
        words, spans, pos = [], [], 0
        for w in item.split():
            start = item.index(w, pos)
            words.append(w)
            spans.append((start, start + len(w)))
            pos = start + len(w)
        return words, item, spans
    if isinstance(item, list):
        text, spans = running_text(item)
        return list(item), text, spans
    return list(item.words), item.text, [tuple(o) for o in item.offsets]


WORDS_SENTENCES = [ud_words(line)[0] for line in UD_SENTENCES[:12]]

# byte-level BPE families whose pre-split words need a prefix space (the likely reload)
PREFIX_SPACE_FAMILIES = {"gpt2", "roberta", "gpt-neox"}
# families where pre-split words cannot tokenize like the running text (at least these)
WORDS_IMPOSSIBLE_AT_LEAST = {"gemma", "llama3", "modernbert", "qwen2"}

# ---------------------------------------------------------------------------------------------
# helpers

_API_CACHE: dict = {}


def api_extract(folder, key: str, sentences, **kwargs):
    """`concepts.api.extract` on `sentences`, memoised per (folder, key, kwargs)."""
    from latent_concepts import api

    k = (str(folder), key, tuple(sorted(kwargs.items())))
    if k not in _API_CACHE:
        try:
            _API_CACHE[k] = api.extract(sentences, model=str(folder), device="cpu", dtype="float32", **kwargs)
        except Exception as e:  # noqa: BLE001 - remembered, re-raised to each caller
            _API_CACHE[k] = e
    out = _API_CACHE[k]
    if isinstance(out, Exception):
        raise out
    return out


def compare(folder, sentences, vecs, aggregation: str, max_length=None, tokenizer_kwargs=None) -> dict:
    """Compare `vecs` (from extract) with the reference, word by word: {"words", "differing",
    "max_diff", "worst"} where worst describes the word with the largest difference."""
    rows = vecs.tokens
    n_words = differing = 0
    worst, worst_diff = "", -1.0
    for i, item in enumerate(sentences):
        words, text, spans = text_and_spans(item)
        ref = reference_all(folder, text, spans, max_length, tokenizer_kwargs)[aggregation]
        sel = np.flatnonzero(rows["sentence"].to_numpy() == i)
        assert len(sel) == len(words), f"sentence {i}: {len(sel)} rows for {len(words)} words"
        assert rows["word"].to_numpy()[sel].tolist() == words, f"sentence {i}: words differ"
        got = vecs.layers[:, sel].astype(np.float64)
        diff = np.abs(got - ref).max(axis=(0, 2))  # per word, over layers and dimensions
        diff = np.where(np.isnan(diff), np.inf, diff)
        n_words += len(words)
        differing += int((diff > TOL).sum())
        j = int(np.argmax(diff))
        if diff[j] > worst_diff:
            al = align(folder, text, spans, tokenizer_kwargs)
            layer = int(np.argmax(np.abs(got[:, j] - ref[:, j]).max(axis=1))) if np.isfinite(diff[j]) else -1
            toks = [al.tokens[k] for k in range(al.runs[j][0], al.runs[j][1] + 1)] if al.runs[j] else []
            worst_diff = float(diff[j])
            worst = (f"sentence {i} word {j} {words[j]!r} span {spans[j]} of {text!r}: diff {diff[j]:.3g} "
                     f"(layer {layer}, {aggregation}); reference subwords {toks}")
    return {"words": n_words, "differing": differing, "max_diff": worst_diff, "worst": worst}


def assert_close(folder, sentences, vecs, aggregation, max_length=None, tokenizer_kwargs=None):
    res = compare(folder, sentences, vecs, aggregation, max_length, tokenizer_kwargs)
    assert res["differing"] == 0, (f"{res['differing']}/{res['words']} words differ by > {TOL} "
                                   f"(max {res['max_diff']:.3g}); worst: {res['worst']}")


def words_mode_tokenizer_kwargs(folder, family: str, word_lists) -> dict | None:
    """The tokenizer arguments under which pre-split words tokenize exactly like the words joined
    by spaces, for every sentence of `word_lists` (None: no such arguments)."""
    options = [{}, {"add_prefix_space": True}] if family in PREFIX_SPACE_FAMILIES else [{}]
    for kw in options:
        tok = tokenizer(folder, kw)
        try:
            if all(tok(w, is_split_into_words=True)["input_ids"] == tok(" ".join(w))["input_ids"]
                   for w in word_lists):
                return kw
        except Exception:  # noqa: BLE001 - a tokenizer that refuses pre-split words
            continue
    return None


# ---------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def family_dir(tmp_path_factory):
    """`family -> folder`, each family built once for the module. The module runs torch on one
    thread: the models are tiny, and on a shared 2-core machine two spinning threads make each
    small matmul ten times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("families")
    built: dict[str, object] = {}

    def get(family: str):
        if family not in built:
            built[family] = build(family, root / family)
        return built[family]

    yield get
    torch.set_num_threads(threads)
    _API_CACHE.clear()


# ---------------------------------------------------------------------------------------------
# the replicas and the reference themselves


@pytest.mark.parametrize("family", FAMILIES)
def test_replica_loads_as_its_family(family_dir, family):
    import transformers
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    d = family_dir(family)
    tok = AutoTokenizer.from_pretrained(d)
    assert type(tok) is getattr(transformers, LOADED_CLASS[family])
    assert AutoConfig.from_pretrained(d).model_type == MODEL_TYPE[family]
    model = AutoModel.from_pretrained(d)
    assert model.config.vocab_size >= len(tok)
    # the reloaded tokenizer reads the training text like the trained one
    from families import trained_tokenizer, training_text

    trained, _ = trained_tokenizer(family)
    same = sum(trained.encode(s).ids == tok(s)["input_ids"] for s in training_text())
    assert same == len(training_text())


def test_reference_on_a_hand_computed_bert_case(family_dir):
    d = family_dir("bert-uncased")
    al = align(d, "Don't stop", [(0, 2), (2, 5), (6, 10)])
    assert al.tokens == ["[CLS]", "don", "'", "t", "stop", "[SEP]"]
    assert al.belongs == [[1], [1, 2, 3], [4]]  # "don" overlaps both "Do" and "n't"
    assert al.runs == [(1, 1), (1, 3), (4, 4)] and al.counts == [1, 3, 1]
    assert al.shared == [True, True, False]
    ref = reference_all(d, "Don't stop", [(0, 2), (2, 5), (6, 10)])
    from word_reference import _hidden

    h = _hidden(str(d), al.ids, al.type_ids)
    np.testing.assert_allclose(ref["first"][:, 1], h[:, 1])
    np.testing.assert_allclose(ref["last"][:, 1], h[:, 3])
    np.testing.assert_allclose(ref["mean"][:, 1], h[:, 1:4].mean(axis=1))
    np.testing.assert_allclose(ref["mean"][:, 0], h[:, 1])


def test_reference_whitespace_and_zero_width_tokens(family_dir):
    spans = [(0, 1), (3, 4)]
    # GPT-2 keeps the offsets untrimmed: "a", " " (whitespace only: p = its end = 2), " b"
    al = align(family_dir("gpt2"), "a  b", spans)
    assert al.tokens == ["a", "Ġ", "Ġb"] and al.offsets == [(0, 1), (1, 2), (2, 4)]
    assert al.belongs == [[0], [1, 2]] and al.shared == [False, False]
    # RoBERTa trims them: the lone space becomes zero-width at 2 (p = its start)
    al = align(family_dir("roberta"), "a  b", spans)
    assert al.tokens == ["<s>", "a", "Ġ", "Ġb", "</s>"] and al.offsets[2][0] == al.offsets[2][1]
    assert al.belongs == [[1], [2, 3]]
    # a trailing space after the last word belongs to no word
    al = align(family_dir("gpt2"), "a b ", [(0, 1), (2, 3)])
    assert al.belongs == [[0], [1]] and len(al.tokens) == 3


def test_reference_window_plan_by_hand():
    assert plan_windows([2, 2, 2, 2, 2], 5) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    windows = plan_windows([3, 1, 1, 4, 2, 2], 6)
    assert windows == [(0, 2), (1, 3), (3, 4), (4, 5)]
    assert [pick_window(windows, i) for i in range(6)] == [0, 0, 1, 1, 2, 3]
    assert plan_windows([1, 1, 1], 10) == [(0, 2)]


@pytest.mark.parametrize("family", ["bert-cased", "t5-encoder", "gpt2", "xlnet"])
def test_reference_windows_by_hand(family_dir, family):
    """One window over all words is the whole encoding; a real cut keeps every input within
    max_length and gives every word a vector."""
    from word_reference import window_input, windows_of

    d = family_dir(family)
    words, text, spans = text_and_spans(long_sentence())
    al = align(d, text, spans)
    assert window_input(al, 0, len(words) - 1)[0] == al.ids
    windows = windows_of(al, 64)
    assert len(windows) >= 3 and windows[0][0] == 0 and windows[-1][1] == len(words) - 1
    for a, b in windows:
        ids, _, lo = window_input(al, a, b)
        assert len(ids) <= 64
        assert ids[:al.n_lead] == al.ids[:al.n_lead] and ids[al.n_lead] == al.ids[lo]
    assert np.isfinite(reference_all(d, text, spans, max_length=64)["mean"]).all()


# ---------------------------------------------------------------------------------------------
# the project against the reference


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_real_sentences_match_the_reference(family_dir, family, aggregation):
    d = family_dir(family)
    sents = real_sentences()
    vecs = api_extract(d, "real", sents, aggregation=aggregation)
    n_words = sum(len(s.words) for s in sents)
    assert vecs.layers.dtype == np.float32 and vecs.layers.shape[1] == n_words and not vecs.skipped
    assert list(vecs.tokens.columns[:6]) == ["sentence", "position", "word", "n_subwords", "shared", "replaced"]
    assert_close(d, sents, vecs, aggregation)


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_batch_matches_the_reference(family_dir, family):
    d = family_dir(family)
    batch = padded_batch()
    for aggregation in AGGREGATIONS:
        vecs = api_extract(d, "padded", batch, aggregation=aggregation, batch_size=len(batch))
        assert not vecs.skipped
        assert_close(d, batch, vecs, aggregation)


@pytest.mark.parametrize("family", FAMILIES)
def test_long_sentence_windows_match_the_reference(family_dir, family):
    d = family_dir(family)
    s = long_sentence()
    words, text, spans = text_and_spans(s)
    al = align(d, text, spans)
    assert len(al.ids) > 64 and len(words) >= 150
    for aggregation in AGGREGATIONS:
        vecs = api_extract(d, "long", [s], aggregation=aggregation, long_sentences="window", max_length=64)
        assert not vecs.skipped
        assert_close(d, [s], vecs, aggregation, max_length=64)
    skipped = api_extract(d, "long-skip", [s, "Dogs bark ."], aggregation="mean", long_sentences="skip",
                          max_length=64)
    assert skipped.skipped == [0] and skipped.tokens["word"].tolist() == ["Dogs", "bark", "."]


@pytest.mark.parametrize("family", FAMILIES)
def test_words_input(family_dir, family):
    from concepts.core.errors import UserError

    d = family_dir(family)
    kw = words_mode_tokenizer_kwargs(d, family, WORDS_SENTENCES)
    if family in WORDS_IMPOSSIBLE_AT_LEAST:
        assert kw is None, f"{family}: pre-split words tokenize like the text; the test's premise is wrong"
    if kw is None:
        with pytest.raises(UserError) as err:
            api_extract(d, "words", WORDS_SENTENCES, aggregation="mean", input="words")
        msg = str(err.value)
        assert MODEL_TYPE[family] in msg and "extraction.input=text" in msg, msg
        return
    for aggregation in AGGREGATIONS:
        vecs = api_extract(d, "words", WORDS_SENTENCES, aggregation=aggregation, input="words")
        assert not vecs.skipped
        assert_close(d, WORDS_SENTENCES, vecs, aggregation, tokenizer_kwargs=kw or None)


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_flags_follow_the_rule(family_dir, family):
    d = family_dir(family)
    sents = real_sentences()
    vecs = api_extract(d, "real", sents, aggregation="first")
    expected = []
    for s in sents:
        expected += align(d, s.text, s.offsets).shared
    got = vecs.tokens["shared"].astype(bool).tolist()
    bad = [(int(r.sentence), r.word, e) for r, e, g in zip(vecs.tokens.itertuples(), expected, got) if e != g]
    assert not bad, f"shared differs for (sentence, word, expected): {bad[:10]}"


@pytest.mark.parametrize("family", FAMILIES)
def test_subword_counts_follow_the_rule(family_dir, family):
    d = family_dir(family)
    sents = real_sentences()
    vecs = api_extract(d, "real", sents, aggregation="first")
    expected = []
    for s in sents:
        expected += align(d, s.text, s.offsets).counts
    got = vecs.tokens["n_subwords"].astype(int).tolist()
    bad = [(int(r.sentence), r.word, e, g) for r, e, g in zip(vecs.tokens.itertuples(), expected, got) if e != g]
    assert not bad, f"n_subwords differs for (sentence, word, expected, got): {bad[:10]}"
