"""One identity rule, checked by experiment: for each stage, flip one option at a time, recompute
the stage from scratch, and compare with the baseline. The content changed if and only if the
identity (the fingerprint that names the output and decides reuse) changed. Each row also says
which way it should go, so an option that silently stops mattering is caught too."""

import hashlib
import shutil

import numpy as np
import pytest
from helpers import compose_cfg, extract_overrides

import concepts.discovery.stage as discover_mod
import concepts.extraction.stage as extract_mod
import neurons.rank as rank_mod
import probing.train as train_mod
from concepts.core.artifacts import read_manifest
from concepts.discovery.records import read_concepts
from concepts.extraction.store import ActivationStore


def check_flip(flip: str, changes: bool, base: tuple, flipped: tuple) -> None:
    """`base` and `flipped` are (identity, content) of the stage before and after the flip."""
    (id0, content0), (id1, content1) = base, flipped
    assert (content1 != content0) == changes, f"{flip}: content {'did not change' if changes else 'changed'}"
    assert (id1 != id0) == (content1 != content0), f"{flip}: identity and content disagree"


# --------------------------------------------------------------------------------- extraction

EXTRACT_FLIPS = [  # (override, content changes)
    ("extraction.aggregation=first", True),
    ("extraction.store_dtype=float16", True),
    ("extraction.dtype=bfloat16", True),
    ("extraction.max_length=12", True),  # some sentences are longer: skipped
    ("corpus.max_sentences=4", True),
    ("corpus.max_sentence_length=8", True),
    ("corpus.tokenizer=regex", True),  # "doesn't" and "3.14" split otherwise
    ("extraction.batch_size=2", False),
    ("extraction.max_batch_tokens=40", False),
    ("extraction.shard_sentences=3", False),  # the layout, not the vectors
    ("extraction.device=cpu", False),
    ("corpus.seed=7", False),  # no sentence cap: the seed picks nothing
    ("corpus.max_sentences=100", False),  # more than the corpus holds
    ("corpus.multiword=surface", False),  # a CoNLL-U option; this corpus is text
    ("corpus.encoding=utf-8-sig", False),  # the same text
    ("corpus.name=other", False),  # names the folder, not the content
]


class StoreContent:
    """The vectors and token table of a store; equal up to float32 rounding (a batch of another
    size pads differently, which moves the last bits and nothing else)."""

    def __init__(self, path):
        store = ActivationStore(path)
        self.layers = [np.asarray(store.layer(layer), dtype=np.float32) for layer in range(store.n_layers)]
        self.tokens = store.tokens()

    def __eq__(self, other) -> bool:
        return (self.tokens.equals(other.tokens) and len(self.layers) == len(other.layers)
                and all(a.shape == b.shape and np.allclose(a, b, atol=1e-5) for a, b in zip(self.layers, other.layers)))


def _extract(tiny_models, text_corpus, ws, *extra):
    res = extract_mod.run(compose_cfg("extract", extract_overrides(tiny_models["bert"], text_corpus, ws, *extra)))
    return read_manifest(res.store)["fingerprint"], StoreContent(res.store)


@pytest.fixture(scope="module")
def extract_base(tiny_models, tmp_path_factory):
    from conftest import SENTENCES

    corpus = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    return corpus, _extract(tiny_models, corpus, tmp_path_factory.mktemp("ws"))


@pytest.mark.parametrize("flip,changes", EXTRACT_FLIPS, ids=[f for f, _ in EXTRACT_FLIPS])
def test_extraction_identity(tiny_models, extract_base, tmp_path, flip, changes):
    corpus, (fp0, content0) = extract_base
    fp, content = _extract(tiny_models, corpus, tmp_path, flip)
    check_flip(flip, changes, (fp0, content0), (fp, content))


# ---------------------------------------------------------------------------------- discovery

DISCOVER_FLIPS = [
    ("sampling.min_count=2", True),
    ("sampling.max_per_type=2", True),
    ("sampling.seed=1", True),  # "the" and "." are capped at 3: another draw
    ("sampling.lowercase=true", True),
    ("clustering=kmeans", True),
    ("discovery.theta=0.3", True),
    ("discovery.tag_sets=[casing,suffix]", True),
    ("clustering.seed=3", False),  # exact Ward has no randomness
    ("clustering.block=7", False),
    ("clustering.chunk=5", False),
    ("clustering.device=cpu", False),
    ("discovery.plot=false", False),
    ("discovery.explorer=false", False),
]


def _concepts_content(res) -> str:
    h = hashlib.sha256()
    for layer in res.layers:
        for c in read_concepts(res.path / f"layer_{layer:02d}" / f"concepts-K{res.k}.jsonl"):
            h.update(repr((c.concept_id, c.members, sorted(c.alignment.items()))).encode())
    h.update(res.alignment.to_json().encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def discover_base(tiny_models, extract_base, tmp_path_factory):
    corpus, _ = extract_base
    ws = tmp_path_factory.mktemp("ws-discover")
    store = extract_mod.run(compose_cfg("extract", extract_overrides(tiny_models["bert"], corpus, ws))).store
    return corpus, ws, store, _discover(tiny_models, corpus, ws, store)


def _discover(tiny_models, corpus, ws, store, *extra):
    shutil.rmtree(store.parent / "concepts", ignore_errors=True)  # recomputed from scratch every time
    over = extract_overrides(tiny_models["bert"], corpus, ws, f"discovery.store={store}", "sampling.min_count=1",
                             "sampling.max_per_type=3", "discovery.k=6", "discovery.tag_sets=[casing,suffix,first_word]",
                             *extra)
    res = discover_mod.run(compose_cfg("discover", over))
    return read_manifest(res.path)["fingerprint"], _concepts_content(res)


@pytest.mark.parametrize("flip,changes", DISCOVER_FLIPS, ids=[f for f, _ in DISCOVER_FLIPS])
def test_discovery_identity(tiny_models, discover_base, flip, changes):
    corpus, ws, store, (fp0, content0) = discover_base
    fp, content = _discover(tiny_models, corpus, ws, store, flip)
    check_flip(flip, changes, (fp0, content0), (fp, content))


# --------------------------------------------------------------------------- probing and ranking

PROBE_FLIPS = [
    ("split.seed=1", True),
    ("split.train=0.5", True),
    ("probe.transform=none", True),
    ("probe.select=false", True),
    ("probing.control=false", True),
    ("probing.seed=1", True),
    ("labels.max_tokens=150", True),
    ("probe.hidden=8", False),  # an MLP option; the probe is linear
    ("probe.batch_size=64", False),  # an Adam option; the probe uses L-BFGS
    ("probe.l2=0.5", False),  # chosen on the dev split (probe.select=true)
    ("labels.top=3", False),  # a concept-label option; these are tags
    ("labels.negatives=3", False),
    ("probe.device=cpu", False),
    ("probing.plot=false", False),
]

RANK_FLIPS = [
    ("ranking=iou", True),
    ("ranking.standardize=false", True),
    ("neurons.ks=[2,4]", True),
    ("neurons.ablate=zero", True),
    ("ranking.seed=3", False),  # probeless has no randomness
    ("ranking.l1=0.1", False),  # a probe_weights option
    ("neurons.plot=false", False),
    ("neurons.top=3", False),  # a super/sub option; super_sub is off
    ("probing.min_examples=61", True),  # VERB, ADV and PUNCT (60 tokens each) leave the task
    ("probing.seed=4", False),  # draws labels.max_tokens rows, and there is no cap
]


def _probe_content(res) -> str:
    rows = [{k: v for k, v in r.row().items() if "seconds" not in k and k != "fingerprint"} for r in res.results]
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def _rank_content(res) -> str:
    parts = [(u, r.order().tolist(), np.round(r.scores, 6).tolist()) for u, r in sorted(res.rankings.items())]
    return hashlib.sha256((repr(parts) + res.curves.round(6).to_json()).encode()).hexdigest()


@pytest.fixture(scope="module")
def tagged_store(tiny_models, tmp_path_factory):

    from conftest import write_tagged_corpus

    corpus = write_tagged_corpus(tmp_path_factory.mktemp("corpus") / "tagged.conllu")
    ws = tmp_path_factory.mktemp("ws-probe")
    over = _tag_over(tiny_models, corpus, ws)
    store = extract_mod.run(compose_cfg("extract", over[:-3])).store
    return corpus, ws, store


def _tag_over(tiny_models, corpus, ws, *extra):
    return ["model=hf", f"model.name_or_path={tiny_models['bert']}", "model.name=tiny", "corpus=ewt",
            f"corpus.path={corpus}", "corpus.name=tagged", f"paths.workspace={ws}", "extraction.progress=false",
            "extraction.device=cpu", "probing.min_examples=5", "layer=[1,2]", "logger=none", *extra]


def _probe(tiny_models, tagged_store, *extra):
    corpus, ws, store = tagged_store
    shutil.rmtree(store.parent / "probing", ignore_errors=True)
    res = train_mod.run(compose_cfg("train", _tag_over(tiny_models, corpus, ws, *extra)))
    return res.path.name, _probe_content(res)


def _rank(tiny_models, tagged_store, *extra):
    corpus, ws, store = tagged_store
    shutil.rmtree(store.parent / "neurons", ignore_errors=True)
    over = [o for o in _tag_over(tiny_models, corpus, ws, "neurons.super_sub=false", "neurons.ks=[2,8]")
            if not o.startswith("probing.") and o != "logger=none"] + list(extra)
    res = rank_mod.run(compose_cfg("rank", over))
    return res.path.name, _rank_content(res)


FLIPS = [("probing", *f) for f in PROBE_FLIPS] + [("rank", *f) for f in RANK_FLIPS]


@pytest.mark.parametrize("stage,flip,changes", FLIPS, ids=[f"{st}:{f}" for st, f, _ in FLIPS])
def test_probing_and_ranking_identity(tiny_models, tagged_store, stage, flip, changes):
    run = {"probing": _probe, "rank": _rank}[stage]
    check_flip(flip, changes, run(tiny_models, tagged_store), run(tiny_models, tagged_store, flip))


# ------------------------------------------------------------- options that cannot change content

def test_a_long_sentence_mode_without_long_sentences_reuses_the_store(tiny_models, text_corpus, tmp_path):
    """extraction.long_sentences=window where no sentence is over the model's limit: the complete
    store made with skip holds the same vectors and is used; with over-long sentences it is not."""
    run = lambda *extra: extract_mod.run(compose_cfg("extract", extract_overrides(tiny_models["bert"], text_corpus,  # noqa: E731
                                                                                 tmp_path, *extra)))
    skip = run()
    window = run("extraction.long_sentences=window")
    assert window.store == skip.store and window.shards_written == 0
    assert len(list(tmp_path.rglob("activations"))) == 1
    # a limit that some sentence passes: the modes differ, and so do the stores
    short_skip = run("extraction.max_length=12")
    short_window = run("extraction.max_length=12", "extraction.long_sentences=window")
    assert short_window.store != short_skip.store
    assert len(ActivationStore(short_window.store).tokens()) > len(ActivationStore(short_skip.store).tokens())


def _concept_over(tiny_models, tagged_store, *extra):
    corpus, ws, store = tagged_store
    return [o for o in _tag_over(tiny_models, corpus, ws) if not o.startswith("layer=")] + [
        "sampling.min_count=1", "sampling.max_per_type=20", "discovery.k=6", "labels=concepts", "labels.top=3",
        "probing.min_test=5", *extra]


def test_concept_probes_of_a_layer_are_kept_when_another_layer_is_added(tiny_models, tagged_store, monkeypatch):
    """layer=[1] then layer=[1,2]: layer 1's concept probe is reused (clustering layer 2 adds
    records to the folder, not to layer 1), and layer 2's is trained."""
    first = train_mod.run(compose_cfg("train", _concept_over(tiny_models, tagged_store, "layer=[1]")))
    (f1,) = list(first.path.glob("layer_01/*.json"))
    stamp = f1.stat().st_mtime_ns
    trained = []
    real = train_mod.probe_one
    monkeypatch.setattr(train_mod, "probe_one", lambda cfg, store, layer, *a, **k: trained.append(layer) or
                        real(cfg, store, layer, *a, **k))
    both = train_mod.run(compose_cfg("train", _concept_over(tiny_models, tagged_store, "layer=[1,2]")))
    assert both.path == first.path and set(trained) == {2}
    assert f1.stat().st_mtime_ns == stamp
    assert {r.layer for r in both.results} == {1, 2}
    # the run's summary covers its layers; the folder's own summary every layer probed there
    first_again = train_mod.run(compose_cfg("train", _concept_over(tiny_models, tagged_store, "layer=[1]")))
    assert set(first_again.summary["layer"]) == {1}
    import pandas as pd

    assert set(pd.read_parquet(first.path / "summary.parquet")["layer"]) == {1, 2}


def _upstream(over: list[str]) -> list[str]:
    """Probe overrides as overrides of an upstream stage (discover, annotate)."""
    over = [o.replace("layer=", "discovery.layers=") if o.startswith("layer=") else o for o in over]
    return [o for o in over if not o.startswith(("labels", "probing", "logger"))]


def test_labels_do_not_depend_on_what_ran_before_in_the_workspace(tiny_models, tagged_store, tmp_path):
    """Labels by alignment with UPOS only, in a workspace where a run with every tag set annotated
    the same concepts first, equal those of a fresh workspace (concepts UPOS leaves unaligned have
    no label, not the earlier run's)."""
    import concepts.annotation.stage as annotate_mod
    from concepts.annotation.dataset import label_of_record, label_source_of

    corpus, ws, _ = tagged_store
    upos = ["annotator.tag_sets=[upos]", "layer=[2]"]

    def labels(workspace, *extra):
        over = [o.replace(f"paths.workspace={ws}", f"paths.workspace={workspace}")
                for o in _concept_over(tiny_models, tagged_store, *extra)]
        cfg = compose_cfg("annotate", _upstream(over))
        res = annotate_mod.run(cfg)
        source = label_source_of(annotate_mod.validate(cfg, annotate_mod.AnnotateConfig))
        recs = read_concepts(res.concepts / "layer_02" / "concepts-K6.jsonl")
        return [(c.concept_id, a.label if (a := label_of_record(c, source)) else None) for c in recs]

    every = labels(ws, "layer=[2]")
    reused = labels(ws, *upos)
    fresh = labels(tmp_path / "fresh", *upos)
    assert reused == fresh
    assert sum(lab is not None for _, lab in every) > sum(lab is not None for _, lab in fresh)  # a real difference


def test_whether_wordnet_is_installed_names_the_concepts_folder(tiny_models, tagged_store, monkeypatch, tmp_path):
    import concepts.discovery.tagsets.wordnet as wn

    if wn.wordnet_identity() is None:
        pytest.skip("WordNet is not installed here (Debian's wordnet-base; .ci/run installs it)")
    corpus, ws, store = tagged_store
    over = _upstream([*_concept_over(tiny_models, tagged_store, "layer=[1]"), f"discovery.store={store}",
                      "discovery.tag_sets=[upos,wordnet]"])
    with_wn = discover_mod.run(compose_cfg("discover", over))
    monkeypatch.setattr(wn, "WORDNET_DIR", tmp_path / "no-wordnet")
    wn.wordnet_reader.cache_clear()
    try:
        without = discover_mod.run(compose_cfg("discover", over))
    finally:
        wn.wordnet_reader.cache_clear()
    assert without.path != with_wn.path
    assert set(with_wn.alignment["tag_set"]) == {"upos", "wordnet"} and set(without.alignment["tag_set"]) == {"upos"}


def test_naming_the_default_label_source_recomputes_nothing(tiny_models, tagged_store, monkeypatch):
    """annotation.label_source=alignment when the annotator is alignment: the default's choice, so
    the annotation and the concept probes are reused."""
    first = train_mod.run(compose_cfg("train", _concept_over(tiny_models, tagged_store, "layer=[2]")))
    monkeypatch.setattr(train_mod, "probe_one", lambda *a, **k: pytest.fail("probed again"))
    import concepts.annotation.stage as annotate_mod

    monkeypatch.setattr(annotate_mod, "_annotate", lambda *a, **k: pytest.fail("annotated again"))
    named = train_mod.run(compose_cfg("train", _concept_over(tiny_models, tagged_store, "layer=[2]",
                                                             "annotation.label_source=alignment")))
    assert named.path == first.path and [r.accuracy for r in named.results] == [r.accuracy for r in first.results]
