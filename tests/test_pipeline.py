"""The end-to-end pipeline and a smoke test of every experiment preset (tiny sizes)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from browser import chromium, rendered_dom, screenshot
from helpers import compose_cfg, tiny_pipeline
from llm_server import LLMServer, Reply, user_text

import neurons.pipeline as pipeline_mod
from concepts.core.cli import CONF_DIR
from concepts.core.errors import UserError

PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
REPO = Path(__file__).resolve().parent.parent


tiny = tiny_pipeline


def test_every_preset_is_covered():
    assert set(PRESETS) == {"demo", "tcn_paper", "layer_sweep", "model_sweep", "neuron_study", "decoder_llm"}


# the demo's smoke in the default run; every other preset with the slow tests
@pytest.mark.parametrize("preset", [p if p == "demo" else pytest.param(p, marks=pytest.mark.slow) for p in PRESETS])
def test_preset_smoke(preset, tiny_models, tagged_corpus, tmp_path, monkeypatch):
    # decoder_llm is for a GPU and a 33-layer model: here the tiny model, on the CPU, two of its layers
    gpu = ["extraction.device=cpu", "extraction.layers=[0,2]"] if preset == "decoder_llm" else []
    over = tiny(tiny_models, tagged_corpus, tmp_path, f"experiment={preset}", *gpu)
    cfg = compose_cfg("pipeline", over)
    assert cfg.preset == preset
    if preset == "tcn_paper":
        # network-only: the paper's models come from the Hub and its labels from an API; here the
        # tiny local model stands in and a local OpenAI-compatible server answers
        assert cfg.discovery.k == 12 and cfg.annotator.model == "gpt-3.5-turbo"
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        with pytest.raises(UserError, match="needs an API key"):
            pipeline_mod.run(cfg)
        with LLMServer(lambda r, n: Reply(f"words like {user_text(r).split('[')[1].split(',')[0]}")) as server:
            res = pipeline_mod.run(compose_cfg("pipeline", [*over, f"annotator.base_url={server.base_url}"]))
            assert len(server.requests) > 0
    else:
        res = pipeline_mod.run(cfg)
    assert res.index.exists() and (res.report / "explorer.html").exists()
    assert set(res.probing["source"]) >= {"tag"} and res.probing["control_accuracy"].notna().all()
    assert (res.report / "dataset" / "concepts-K12.parquet").exists()


def test_hub_models_are_refused_up_front_when_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE=1"):
        pipeline_mod.run(compose_cfg("pipeline", ["model=bert-base-cased", f"paths.workspace={tmp_path}"]))


def test_rerun_reuses_everything_and_a_new_probe_reruns_only_probing(tiny_models, tagged_corpus, tmp_path, monkeypatch):
    import concepts.discovery.clustering as clustering
    import concepts.extraction.extractor as extractor
    import neurons.rank as rank_mod

    over = tiny(tiny_models, tagged_corpus, tmp_path, "pipeline.wandb=false")
    first = pipeline_mod.run(compose_cfg("pipeline", over))
    monkeypatch.setattr(extractor.Extractor, "run", lambda *a, **k: pytest.fail("re-extracted"), raising=False)
    monkeypatch.setattr(clustering, "cluster", lambda *a, **k: pytest.fail("re-clustered"))
    monkeypatch.setattr(rank_mod, "make_ranker", lambda *a, **k: pytest.fail("re-ranked"))
    again = pipeline_mod.run(compose_cfg("pipeline", over))
    assert again.probing["accuracy"].tolist() == first.probing["accuracy"].tolist()
    assert sum(v for k, v in again.stages.items() if k != "report") < first.seconds / 2
    changed = pipeline_mod.run(compose_cfg("pipeline", [*over, "probe.select=false", "probe.l2=0.001"]))  # no re-ranking
    assert set(changed.probing["fingerprint"]).isdisjoint(first.probing["fingerprint"])  # probes trained anew


def test_report_renders_in_chromium(tiny_models, tagged_corpus, tmp_path):
    chromium()  # skips with a message where it is missing
    res = pipeline_mod.run(compose_cfg("pipeline", tiny(tiny_models, tagged_corpus, tmp_path, "pipeline.wandb=false")))
    dom = rendered_dom(res.index.resolve().as_uri(), tmp_path)
    assert "Latent concepts of tiny" in dom and "concept explorer" in dom and "<img" in dom
    assert dom.count("<img") >= 3
    explorer = rendered_dom((res.report / "explorer.html").resolve().as_uri(), tmp_path)
    assert explorer.count('class="concept"') >= 1 and "top neurons" in explorer
    png = screenshot(res.index.resolve().as_uri(), tmp_path / "report.png", tmp_path, "1280,2400")
    assert png.stat().st_size > 30_000


@pytest.mark.slow
def test_layer_sweep_preset_runs_as_a_multirun(tiny_models, tagged_corpus, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    args = tiny(tiny_models, tagged_corpus, tmp_path, "experiment=layer_sweep", "layer=0,2",
                "pipeline.concept_probes=false", "pipeline.wandb=false")
    out = subprocess.run([sys.executable, "-m", "neurons.pipeline", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = list((tmp_path / "logs" / "pipeline-multirun").iterdir())
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert len(summary) == 3  # header + layers 0 and 2
    assert (sweep / "curves.csv").exists()
    # each job keeps its own report; the sweep's comparison page joins them into one line, layer on x
    from neurons.compare import load_report, merge_series

    reports = sorted((tmp_path / "report").glob("tiny-tagged-layer*"))
    assert [r.name for r in reports] == ["tiny-tagged-layer0", "tiny-tagged-layer2"]
    (series,) = merge_series([load_report(r) for r in reports])
    gold = series["probing"].query("source == 'tag'")
    assert sorted(gold["layer"]) == [0, 2] and series["depth"] == 3
    for r in reports:  # each layer's numbers are those of the job that ran it
        own = load_report(r)["probing"].query("source == 'tag'")
        assert gold.set_index("layer").loc[own["layer"], "accuracy"].tolist() == own["accuracy"].tolist()
    (page,) = list((tmp_path / "report").glob("compare-*"))
    index = (page / "index.html").read_text()
    assert "tiny-tagged-layer0" in index and "tiny-tagged-layer2" in index and "relative depth" not in index
    assert (page / "probing.png").stat().st_size > 5000


def test_a_corpus_too_small_for_k_is_refused_before_anything_runs(tiny_models, tagged_corpus, tmp_path):
    """The demo's K=600 on a few sentences: one message with the largest K that fits, and no work done."""
    over = tiny(tiny_models, tagged_corpus, tmp_path, "discovery.k=600")
    with pytest.raises(UserError, match=r"discovery.k=600 cannot be reached: .*at most (\d+) sampled tokens") as err:
        pipeline_mod.run(compose_cfg("pipeline", over))
    assert not list(tmp_path.rglob("activations"))
    most = int(str(err.value).split("at most ")[1].split()[0].replace(",", ""))
    res = pipeline_mod.run(compose_cfg("pipeline", [*over, f"discovery.k={most}", "pipeline.neurons=false",
                                                    "pipeline.concept_probes=false", "pipeline.wandb=false"]))
    assert res.index.exists()  # the advised K works (every sentence fits the tiny model here)


def test_wandb_runs_carry_the_config_share_a_group_and_live_in_one_folder(tiny_models, tagged_corpus, tmp_path, capfd,
                                                                        monkeypatch):
    from wandb_files import read_run

    over = tiny(tiny_models, tagged_corpus, tmp_path / "ws", "pipeline.wandb=true")
    pipeline_mod.run(compose_cfg("pipeline", over))
    root = tmp_path / "ws" / "wandb" / "wandb"
    runs = [read_run(d) for d in sorted(root.glob("offline-run-*"))]
    assert not [d for d in (tmp_path / "ws").rglob("offline-run-*") if root not in d.parents]  # one folder only
    assert {r["job_type"] for r in runs} == {"probe", "pipeline"}
    (group,) = {r["group"] for r in runs}  # one group per invocation: settings, then a unique stamp
    assert group.startswith("pipeline-tiny-tagged-") and len(group) > len("pipeline-tiny-tagged-") + 15
    for r in runs:  # the full resolved config, so the UI filters and groups by any option
        c = r["config"]
        assert c["model"]["name_or_path"] == str(tiny_models["bert"])
        assert c["corpus"]["name"] == "tagged" and c["discovery"]["k"] == 12
        assert c["extraction"]["aggregation"] == "last" and c["fingerprints"]["store"]
    probes = [r for r in runs if r["job_type"] == "probe"]
    assert {(r["config"]["layer"], r["config"]["labels"]["source"]) for r in probes} >= {(0, "tag"), (2, "concepts")}
    for r in probes:  # a probe's config holds the options a probe uses; its name, model, corpus, layer, method
        assert not {"ranking", "neurons", "pipeline"} & set(r["config"])
        assert r["name"] == f"tiny-tagged-L{r['config']['layer']}-{r['config']['task']}-linear"
    (pipe,) = [r for r in runs if r["job_type"] == "pipeline"]
    assert pipe["name"] == "tiny-tagged-pipeline"
    # a table is logged as <key>/_type, a plot as <key>_table/_type
    keys = {k.removesuffix("/_type").removesuffix("_table") for h in pipe["history"] for k in h if k.endswith("/_type")}
    assert {"alignment", "concepts", "probes/gold/upos", "probes/gold/upos/accuracy", "probes/concepts",
            "neurons/rankings", "neurons/curves"} <= keys
    assert not any("accuracy_by_layer" in k for k in keys)  # no line mixing gold and concept probes
    assert pipe["summary"]["probes/gold/upos/best_accuracy"] > 0.5
    # a re-run with nothing changed, as another invocation, logs nothing new
    import concepts.core.cli as cli

    monkeypatch.setattr(cli, "_STAMP", [])
    pipeline_mod.run(compose_cfg("pipeline", over))
    assert len(list(root.glob("offline-run-*"))) == len(runs)
    # W&B turned on after a run without it: the reused probes are logged once, marked cached, in
    # that invocation's own group
    pipeline_mod.run(compose_cfg("pipeline", tiny(tiny_models, tagged_corpus, tmp_path / "ws2", "pipeline.wandb=false")))
    monkeypatch.setattr(cli, "_STAMP", [])
    pipeline_mod.run(compose_cfg("pipeline", tiny(tiny_models, tagged_corpus, tmp_path / "ws2", "pipeline.wandb=true")))
    later = [read_run(d) for d in sorted((tmp_path / "ws2" / "wandb" / "wandb").glob("offline-run-*"))]
    assert len([r for r in later if "cached" in r["tags"]]) == len(probes)
    (group2,) = {r["group"] for r in later}
    assert group2 != group and group2.startswith("pipeline-tiny-tagged-")
    assert "anonymous setting" not in capfd.readouterr().err
    index = (tmp_path / "ws" / "report" / "tiny-tagged" / "index.html").read_text()
    assert f"wandb sync {root}/offline-run-*" in index


def test_report_names_missing_tag_sets_and_links_super_sub_concepts(tiny_models, tagged_corpus, tmp_path, monkeypatch):
    import re

    import concepts.discovery.tagsets as tagsets
    from concepts.annotation.dataset import label_of_record
    from concepts.discovery.records import read_concepts

    monkeypatch.setitem(tagsets.TAG_SETS, "wordnet", lambda tokens: None)  # as without wordnet-base
    over = tiny(tiny_models, tagged_corpus, tmp_path, "pipeline.wandb=false", "discovery.tag_sets=[upos,wordnet,casing]")
    res = pipeline_mod.run(compose_cfg("pipeline", over))
    index = res.index.read_text()
    assert "Tag sets not computed here: wordnet" in index
    assert "<th></th>" not in index  # the neuron table has no empty pivot-header column
    # neuron plots as small multiples and one cross-layer figure, not one repeat per layer
    assert "src='neurons-by-layer.png'" in index and "src='neurons-vs-k.png'" in index
    assert index.count("-salience.png' alt") == 1 and index.count("accuracy_vs_k.png' alt") == 0
    assert (res.report / "neurons-by-layer.png").stat().st_size > 5000
    links = re.findall(r"<a href='explorer.html#L(\d+)-C(\d+)'>C\d+</a></td><td>([^<]*)</td><td>([^<]*)</td>", index)
    assert links and len(res.ranked.super_sub)
    (concepts_dir,) = list(tmp_path.rglob("concepts/ward-*"))
    for layer, cid, label, words in links:  # each sub concept: its label of record and its top words
        (c,) = [c for c in read_concepts(concepts_dir / f"layer_{int(layer):02d}" / "concepts-K12.jsonl")
                if c.concept_id == int(cid)]
        ann = label_of_record(c)
        assert label == (ann.label if ann else "") and words.split(", ")[0] in c.type_counts


@pytest.mark.slow
def test_a_model_sweep_gets_a_comparison_page(tiny_models, tagged_corpus, tmp_path):
    """Two models of different depth: the sweep callback writes one page with a line per model on a
    relative-depth axis; its tables match the reports'."""
    from omegaconf import OmegaConf

    from neurons.compare import CompareSweep, load_report
    from neurons.compare import main as compare_main

    sweep = tmp_path / "sweep"
    for i, arch in enumerate(["bert", "roberta"]):
        over = tiny(tiny_models, tagged_corpus, tmp_path / "ws", "pipeline.wandb=false", "pipeline.concept_probes=false")
        over = [o for o in over if not o.startswith("model.")] + [f"model.name_or_path={tiny_models[arch]}", f"model.name={arch}"]
        res = pipeline_mod.run(compose_cfg("pipeline", over))
        (sweep / str(i)).mkdir(parents=True)
        pipeline_mod._save_for_sweep(sweep / str(i), res)
    CompareSweep().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}},
                                                     "paths": {"workspace": str(tmp_path / "ws")}}))
    page = tmp_path / "ws" / "report" / "compare-sweep"
    index = (page / "index.html").read_text()
    assert "relative depth" in index and "bert-tagged 3" in index and "roberta-tagged 4" in index
    for png in ("alignment.png", "probing.png", "neurons.png"):
        assert (page / png).stat().st_size > 5000
    bert = load_report(tmp_path / "ws" / "report" / "bert-tagged")
    best = bert["probing"].query("source == 'tag'").groupby("layer")["accuracy"].mean()
    assert f"{best.iloc[-1]:.3f}"[:4] in index  # the comparison table holds the report's numbers
    assert compare_main([str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2


def test_a_sampled_pipeline_extracts_and_probes_only_the_sampled_tokens(tiny_models, tagged_corpus, tmp_path):
    """pipeline.store=sampled (the paper's scale): no store of every word; discovery, the gold and
    concept probes and the ranking all read the sampled store, and the report says so."""
    import json

    from concepts.extraction.store import ActivationStore

    over = tiny(tiny_models, tagged_corpus, tmp_path, "pipeline.store=sampled", "pipeline.wandb=false",
                "sampling.max_per_type=3", "probing.min_test=5")
    res = pipeline_mod.run(compose_cfg("pipeline", over))
    assert not list(tmp_path.rglob("activations")), "a store of every word was made"
    (sampled,) = list(tmp_path.rglob("sampled-*"))
    store = ActivationStore(sampled)
    n = len(store.tokens())
    words = store.tokens()["word"].str.lower().value_counts()
    assert n < store.manifest["sample_stats"]["tokens_in"] and words.max() <= 3  # max_per_type held
    gold = res.probing.query("source == 'tag'")
    assert len(gold) and (gold["n_train"] + gold["n_dev"] + gold["n_test"] <= n).all()
    assert set(res.probing["source"]) == {"tag", "concepts"}
    assert res.ranked is not None and len(res.ranked.curves)
    assert json.loads((res.report / "report.json").read_text())["layers_in_model"] == store.n_layers
    index = (res.report / "index.html").read_text()
    assert f"{n} sampled (min_count=1, max_per_type=3)" in index
    with pytest.raises(UserError, match="pipeline.store='every'"):
        pipeline_mod.run(compose_cfg("pipeline", [*over, "pipeline.store=every"]))
