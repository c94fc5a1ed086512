import json

import numpy as np
import pytest
from conftest import SENTENCES
from helpers import compose_cfg, extract_overrides

import concepts.discovery.stage as discover_mod
from concepts.annotation.formats.cluster_lines import (
    read_conceptx,
    read_tcn,
    write_conceptx,
    write_tcn,
)
from concepts.core.errors import UserError
from concepts.discovery.alignment import align
from concepts.discovery.records import Annotation, Concept, Member, read_concepts, write_concepts
from concepts.extraction.sampling import sample_tokens


def test_sampling_by_hand():
    words = ["a"] * 5 + ["b"] * 2 + ["c"] * 3 + ["a"] * 2
    rows, st = sample_tokens(words, min_count=3, max_per_type=4, seed=0)
    kept = [words[i] for i in rows]
    assert kept.count("a") == 4 and kept.count("c") == 3 and "b" not in kept
    assert (st.tokens_in, st.types_in, st.types_kept, st.tokens_dropped_rare, st.tokens_dropped_cap) == (12, 3, 2, 2, 3)
    assert list(rows) == sorted(rows)
    again, _ = sample_tokens(words, min_count=3, max_per_type=4, seed=0)
    np.testing.assert_array_equal(rows, again)


def test_alignment_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    tags = [("N",), ("N",), ("N",), ("V",), ("V",), ("V",), ("A", "X"), ("A",), ("A",), ("A", "X")]
    per, summ = align(labels, tags, theta=0.75)
    assert per[0] == {"best": [["N", 0.75], ["V", 0.25]], "aligned": "N"}
    assert per[1]["aligned"] == "V" and per[2]["aligned"] == "A"
    assert per[2]["best"][1] == ["X", 0.5]
    assert (summ.concepts_aligned, summ.tags, summ.tags_covered) == (3, 4, 3)
    assert summ.concept_share == 1.0 and summ.tag_share == 0.75 and summ.mean == 0.875
    _, strict = align(labels, tags, theta=0.9)
    assert strict.concepts_aligned == 2 and strict.tags_covered == 2


def _concepts():
    c0 = Concept.build("m", 3, 2, 0, [Member("dog", 0, 1), Member("cat", 2, 0), Member("dog", 5, 3)])
    c1 = Concept.build("m", 3, 2, 1, [Member("runs", 0, 2), Member("it's", 1, 4)])
    c1.annotations.append(Annotation("alignment", "-", "default", "verbs"))
    c0.alignment = {"upos": {"best": [["NOUN", 1.0]], "aligned": "NOUN"}}
    return [c0, c1]


def test_records_tcn_and_conceptx_round_trip(tmp_path):
    cs = _concepts()
    write_concepts(tmp_path / "c.jsonl", cs)
    assert read_concepts(tmp_path / "c.jsonl") == cs
    assert cs[0].type_counts == {"dog": 2, "cat": 1}
    write_conceptx(tmp_path / "clusters-2.txt", cs)
    lines = (tmp_path / "clusters-2.txt").read_text().splitlines()
    assert lines[0] == "dog|||1|||0|||1|||0" and lines[2] == "dog|||2|||5|||3|||0"
    back = read_conceptx(tmp_path / "clusters-2.txt", "m", 3)
    assert [c.members for c in back] == [c.members for c in cs]
    sentences = [["the", "dog", "runs"], ["x"], ["cat"]]
    write_tcn(tmp_path / "tcn", sentences, {3: cs})
    sents, by_layer = read_tcn(tmp_path / "tcn", "m")
    assert sents == sentences
    assert [c.members for c in by_layer[3]] == [c.members for c in cs]
    assert by_layer[3][1].annotations[0].label == "verbs" and not by_layer[3][0].annotations
    with pytest.raises(UserError, match="cannot hold it"):
        write_conceptx(tmp_path / "bad.txt", [Concept.build("m", 0, 1, 0, [Member("a|||b", 0, 0)])])
    (tmp_path / "broken.txt").write_text("dog|||1|||0\n")
    with pytest.raises(UserError, match="broken.txt:1"):
        read_conceptx(tmp_path / "broken.txt")


def _discover(model_dir, corpus, ws, *extra):
    over = extract_overrides(model_dir, corpus, ws, "sampling.min_count=1", "sampling.max_per_type=3",
                             "discovery.k=6", *extra)
    return discover_mod.run(compose_cfg("discover", over))


def test_discover_end_to_end_resume_and_new_k(tiny_models, text_corpus, tmp_path, monkeypatch):
    res = _discover(tiny_models["bert"], text_corpus, tmp_path)
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert manifest["complete"] and manifest["layers_done"]["6"] == [0, 1, 2]
    n_sampled = manifest["counts"]["sampled_tokens"]
    for layer in range(3):
        concepts = read_concepts(res.path / f"layer_{layer:02d}" / "concepts-K6.jsonl")
        assert len(concepts) == 6 and sum(c.size for c in concepts) == n_sampled
        words = {w for s in SENTENCES for w in s.split()}
        assert all(m.word in words for c in concepts for m in c.members)
    assert (res.path / "alignment-K6.png").stat().st_size > 1000
    sets = set(res.alignment["tag_set"])
    assert {"suffix", "casing", "is_number", "first_word"} <= sets and not sets & {"upos", "xpos", "deprel", "feats"}
    assert (res.path / "explorer-K6.html").exists()
    # a re-run does no clustering; another K is a cut of the saved tree
    monkeypatch.setattr(discover_mod, "cluster", lambda *a, **k: pytest.fail("re-clustered"))
    again = _discover(tiny_models["bert"], text_corpus, tmp_path)
    assert again.path == res.path
    k4 = _discover(tiny_models["bert"], text_corpus, tmp_path, "discovery.k=4", "discovery.layers=[1]")
    assert len(read_concepts(k4.path / "layer_01" / "concepts-K4.jsonl")) == 4


def test_discover_other_methods(tiny_models, text_corpus, tmp_path):
    res = _discover(tiny_models["gpt2"], text_corpus, tmp_path, "clustering=kmeans_ward", "discovery.layers=2")
    assert res.path.name.startswith("kmeans_ward-") and (res.path / "layer_02" / "assign.npy").exists()
    res = _discover(tiny_models["gpt2"], text_corpus, tmp_path, "clustering=kmeans", "discovery.layers=2")
    assert len(read_concepts(res.path / "layer_02" / "concepts-K6.jsonl")) == 6


def test_discover_bad_input(tiny_models, text_corpus, tmp_path):
    # said before anything is extracted: the corpus's word counts bound the sample
    with pytest.raises(UserError, match=r"discovery.k=500 cannot be reached: .* at most (\d+) sampled tokens.*"
                                        r"Set discovery.k to at most \1"):
        _discover(tiny_models["bert"], text_corpus, tmp_path, "discovery.k=500")
    assert not list(tmp_path.rglob("activations"))
    _discover(tiny_models["bert"], text_corpus, tmp_path, "discovery.layers=0")  # the store now exists
    with pytest.raises(UserError, match="discovery.k=500 is larger than the"):
        _discover(tiny_models["bert"], text_corpus, tmp_path, "discovery.k=500")
    assert len(list(tmp_path.rglob("concepts/*"))) == 1  # the failed discovery left no half-made concepts folder
    with pytest.raises(UserError, match="layer 9 does not exist"):
        _discover(tiny_models["bert"], text_corpus, tmp_path, "discovery.layers=[1,9]")
    store = _discover(tiny_models["bert"], text_corpus, tmp_path, "discovery.layers=0").store
    with pytest.raises(UserError, match="not model.name_or_path"):
        _discover(tiny_models["gpt2"], text_corpus, tmp_path, f"discovery.store={store}")
    with pytest.raises(UserError, match="sampling kept no token"):
        _discover(tiny_models["bert"], text_corpus, tmp_path, "sampling.min_count=1000")


def test_wordnet_supersenses(monkeypatch, caplog):
    import pandas as pd

    import concepts.discovery.tagsets.wordnet as wn_mod
    from concepts.discovery.tagsets import compute_tag_sets

    if wn_mod.wordnet_reader() is None:
        pytest.skip("WordNet (apt-get install wordnet-base) or NLTK is missing")
    df = pd.DataFrame({"word": ["dogs", "ran", "Paris", "teacher", "happy"], "lemma": ["dog", "run", "Paris", "teacher", "happy"],
                       "upos": ["NOUN", "VERB", "PROPN", "NOUN", "ADJ"], "position": [0, 1, 2, 3, 4]})
    tags = compute_tag_sets(df, ["wordnet"])["wordnet"]
    assert tags == [("noun.animal",), ("verb.motion",), (), ("noun.person",), ()]
    wn_mod.wordnet_reader.cache_clear()
    monkeypatch.setattr(wn_mod, "WORDNET_DIR", wn_mod.Path("/nonexistent"))
    with caplog.at_level("INFO"):
        assert compute_tag_sets(df, ["wordnet", "upos"]).keys() == {"upos"}  # skipped with a message
    said = [r.getMessage() for r in caplog.records if "wordnet" in r.getMessage().lower()]
    # one line, with the cause and the fix (it once also said "the corpus has no such column")
    assert said == ["tag set wordnet skipped: no WordNet database at /nonexistent (apt-get install wordnet-base)"]
    wn_mod.wordnet_reader.cache_clear()


def test_a_killed_discovery_leaves_a_folder_that_says_what_it_holds(tiny_models, text_corpus, tmp_path, monkeypatch):
    import concepts.annotation.stage as annotate_mod

    real = discover_mod._layer_clustering

    def dies_on_layer_2(store, rows, layer, ldir, cfg):
        if layer == 2:
            raise KeyboardInterrupt  # killed while clustering layer 2
        return real(store, rows, layer, ldir, cfg)

    monkeypatch.setattr(discover_mod, "_layer_clustering", dies_on_layer_2)
    with pytest.raises(KeyboardInterrupt):
        _discover(tiny_models["bert"], text_corpus, tmp_path)
    (folder,) = list(tmp_path.rglob("concepts/ward-*"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["layers_done"]["6"] == [0, 1]
    # the next stage can use what is there
    over = extract_overrides(tiny_models["bert"], text_corpus, tmp_path, "sampling.min_count=1", "sampling.max_per_type=3",
                             "discovery.k=6", f"annotation.concepts={folder}")
    res = annotate_mod.run(compose_cfg("annotate", over))
    assert res.layers == [0, 1]
    monkeypatch.undo()
    done = _discover(tiny_models["bert"], text_corpus, tmp_path)  # resumes with layer 2
    assert json.loads((done.path / "manifest.json").read_text())["complete"] is True


def test_theta_and_tag_sets_have_outputs_of_their_own(tiny_models, text_corpus, tmp_path, monkeypatch):
    """θ and the tag sets change every record's alignment: each choice gets its own complete folder,
    recorded in its manifest and alignment files, sharing the merge trees (no re-clustering), and
    the first folder is left as it was."""
    base = _discover(tiny_models["bert"], text_corpus, tmp_path, "discovery.theta=0.9")
    before = {f: f.read_bytes() for f in base.path.rglob("*") if f.is_file()}
    monkeypatch.setattr(discover_mod, "cluster", lambda *a, **k: pytest.fail("re-clustered"))
    low = _discover(tiny_models["bert"], text_corpus, tmp_path, "discovery.theta=0.3")
    sets = _discover(tiny_models["bert"], text_corpus, tmp_path, "discovery.theta=0.9", "discovery.tag_sets=[casing]")
    assert len({base.path, low.path, sets.path}) == 3
    assert {f: f.read_bytes() for f in base.path.rglob("*") if f.is_file()} == before
    for res, theta, tag_sets in ((base, 0.9, None), (low, 0.3, None), (sets, 0.9, ["casing"])):
        manifest = json.loads((res.path / "manifest.json").read_text())
        assert manifest["complete"] and manifest["theta"] == theta
        assert manifest["identity"]["alignment"]["theta"] == theta
        assert set(res.alignment["theta"]) == {theta}
        if tag_sets:
            assert manifest["tag_sets"] == tag_sets and set(res.alignment["tag_set"]) == set(tag_sets)
    # the same clusters, aligned at each θ by hand
    for layer in range(3):
        a = read_concepts(base.path / f"layer_{layer:02d}" / "concepts-K6.jsonl")
        b = read_concepts(low.path / f"layer_{layer:02d}" / "concepts-K6.jsonl")
        assert [c.members for c in a] == [c.members for c in b]
        for ca, cb in zip(a, b):
            best = ca.alignment["casing"]["best"][0][1]
            assert (ca.alignment["casing"]["aligned"] is not None) == (best >= 0.9)
            assert (cb.alignment["casing"]["aligned"] is not None) == (best >= 0.3)
    lo, hi = (r.alignment.query("tag_set == 'casing'")["concepts_aligned"].sum() for r in (low, base))
    assert lo > hi
    # each is reused as it stands
    assert _discover(tiny_models["bert"], text_corpus, tmp_path, "discovery.theta=0.3").path == low.path


@pytest.mark.parametrize("lowercase", [False, True])
def test_type_counter_draws_the_sample_of_sample_tokens(lowercase):
    """The streaming counter (a vocabulary and int32 ids) gives sample_tokens' rows and counts."""
    from concepts.extraction.sampling import TypeCounter

    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(300)] + ["The", "the", "THE", "b", "B", "ä", "Z"]
    words = [vocab[i] for i in rng.zipf(1.3, 20000) % len(vocab)]
    counter = TypeCounter(lowercase)
    for start in range(0, len(words), 37):  # sentence by sentence
        counter.add(words[start : start + 37])
    for min_count, cap, seed in ((1, 1, 0), (10, 10, 0), (5, 3, 7)):
        rows, stats = counter.sample(min_count, cap, seed)
        ref_rows, ref_stats = sample_tokens(words, min_count, cap, seed, lowercase)
        assert np.array_equal(rows, ref_rows) and stats == ref_stats


def test_build_concepts_groups_rows_as_a_scan_per_concept_does():
    from dataclasses import asdict

    from concepts.discovery.stage import build_concepts

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 500)
    labels[labels == 5] = 6  # concept 5 left empty
    members = [Member(f"w{rng.integers(0, 30)}", int(i // 20), int(i % 20)) for i in range(500)]
    got = build_concepts("m", 2, 7, labels, members)
    assert [c.concept_id for c in got] == list(range(7)) and got[5].members == [] and got[5].type_counts == {}
    for c in got:  # the reference: one scan of the labels per concept, members in row order
        expect = [members[i] for i in np.flatnonzero(labels == c.concept_id)]
        assert c.members == expect
        assert c.type_counts == dict(sorted(
            {w: sum(m.word == w for m in expect) for w in {m.word for m in expect}}.items(),
            key=lambda kv: (-kv[1], [m.word for m in expect].index(kv[0]))))
    # the record written is dataclasses.asdict's, annotations and alignment included
    for c in _concepts() + got:
        assert c.to_json() == asdict(c)
        assert json.dumps(c.to_json()) == json.dumps(asdict(c))
