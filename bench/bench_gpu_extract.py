"""Extraction on an accelerator: float32 against bfloat16 and float16, and the share of the time
spent outside the forward pass (issue 15's targets: under 25%, and bfloat16 at least 1.5x float32
for a 12-layer 768-d model).

For each compute dtype, one process runs:
  model     the same batches straight through the model, synchronised: the model's own speed
  store     `concepts.extract.run` into a fresh store (`--store sampled|full`, float16 on disk);
            its forward time comes from CUDA events, the rest is the pipeline around it
  profile   `torch.profiler` over a few batches: the costliest device kernels (why a dtype is slow)
On CUDA, float16 and bfloat16 run twice: as extraction runs them (cuDNN's attention left out,
`extraction.cudnn_attention=false`) and with it allowed (PyTorch's default, which on Hopper plans
each new input shape first: compare the cold columns).

Model: a bert-base-sized BERT with random weights (`--layers 12 --hidden 768`), MiniLM's uncased
vocabulary (`--tokenizer`: a folder with the tokenizer files, or the embedded package), unless
`--model` names a real one. Corpus: UD EWT, `--splits`.

    python bench/bench_gpu_extract.py --device cuda --dtypes float32 bfloat16 float16
    python bench/bench_gpu_extract.py --device cpu --splits dev --dtypes float32 --max-sentences 200  # a dry run
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_speed(cfg, device: str, dtype: str, reps: int = 2) -> dict:
    """Words/s of the model alone over the store's own batches (tokenised first, synchronised), with
    the extraction's attention kernels (`extraction.cudnn_attention`): the first pass ("cold", where
    kernels and any per-shape plans are made) and the best of the others."""
    from concepts.corpus.loading import load_corpus
    from concepts.extraction.extractor import attention_context, make_batches
    from concepts.extraction.models import load_model
    from concepts.extraction.stage import _encode_for_store

    lm = load_model(cfg.model, device, dtype)
    sents = list(load_corpus(cfg.corpus).iter_sentences())
    enc = _encode_for_store(lm, cfg.extraction, sents)
    segs = enc.segments
    batches = make_batches([len(s.input_ids) for s in segs], cfg.extraction.batch_size or 64, cfg.extraction.max_batch_tokens)
    inputs = []
    for ids in batches:
        T = max(len(segs[i].input_ids) for i in ids)
        x = torch.full((len(ids), T), lm.tokenizer.pad_token_id, dtype=torch.long)
        m = torch.zeros((len(ids), T), dtype=torch.long)
        for r, i in enumerate(ids):
            n = len(segs[i].input_ids)
            x[r, :n] = torch.tensor(segs[i].input_ids)
            m[r, :n] = 1
        inputs.append((x.to(device), m.to(device)))
    words = sum(len(s) for s in sents)
    times = []
    attn_ctx = lambda: attention_context(torch.device(device), cfg.extraction.cudnn_attention)  # noqa: E731
    with torch.inference_mode(), attn_ctx():
        for _ in range(reps):  # the first rep warms the kernels up
            sync(device)
            t = time.perf_counter()
            for x, m in inputs:
                lm.model(input_ids=x, attention_mask=m, output_hidden_states=True)
            sync(device)
            times.append(time.perf_counter() - t)
    best = min(times[1:] or times)
    prof = None
    if device.startswith("cuda"):
        from torch.profiler import ProfilerActivity, profile

        with torch.inference_mode(), attn_ctx(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            for x, m in inputs[:20]:
                lm.model(input_ids=x, attention_mask=m, output_hidden_states=True)
            sync(device)
        prof = p.key_averages().table(sort_by="cuda_time_total", row_limit=12)
    attn = getattr(lm.model.config, "_attn_implementation", None)
    del lm
    return {"words": words, "batches": len(inputs), "shapes": len({tuple(x.shape) for x, _ in inputs}),
            "model_cold_s": times[0], "model_s": best, "model_words_per_s": words / best,
            "attention": attn, "profile": prof}


def store_speed(cfg, sample) -> dict:
    import concepts.extraction.stage as extract_mod

    t = time.perf_counter()
    res = extract_mod.run(cfg, sample=sample)
    took = time.perf_counter() - t
    return {"store_s": took, "loop_s": res.loop_seconds, "forward_s": res.forward_seconds,
            "outside_forward_share_of_loop": 1 - res.forward_seconds / max(res.loop_seconds, 1e-9),
            "outside_forward_share": 1 - res.forward_seconds / max(took, 1e-9)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float16"])
    ap.add_argument("--splits", nargs="+", default=["train", "dev", "test"])
    ap.add_argument("--max-sentences", type=int, default=None)
    ap.add_argument("--store", choices=["sampled", "full"], default="sampled")
    ap.add_argument("--store-dtype", default="float16")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--model", default=None, help="a real model (folder or Hub id) instead of the random bert-base")
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    from bench_paper_scale import make_model  # the same random bert-base, MiniLM's vocabulary
    from hydra import compose, initialize_config_dir

    import concepts.annotation.config  # noqa: F401  (registers the schemas of the concepts stages)
    from concepts.core.cli import CONF_DIR
    from concepts.core.config import validate
    from concepts.discovery.config import DiscoverConfig
    tmp = Path(tempfile.mkdtemp(prefix="gpu-extract-"))
    model = args.model or str(make_model(tmp / "model", args.layers, args.hidden, args.tokenizer))
    results = []
    # each dtype as extraction runs it (no cuDNN attention); float16/bfloat16 on CUDA also with it
    runs = [(d, False) for d in args.dtypes]
    if args.device.startswith("cuda"):
        runs += [(d, True) for d in args.dtypes if d != "float32"]
    for dtype, cudnn in runs:
        ws = tmp / f"ws-{dtype}-{cudnn}"
        over = ["model=hf", f"model.name_or_path={model}", "model.name=bench", f"paths.workspace={ws}",
                f"corpus.splits=[{','.join(args.splits)}]", "extraction.progress=false", f"extraction.device={args.device}",
                f"extraction.dtype={dtype}", f"extraction.store_dtype={args.store_dtype}",
                f"extraction.batch_size={args.batch_size}", "runtime.threads=null", f"extraction.cudnn_attention={cudnn}",
                *([f"corpus.max_sentences={args.max_sentences}"] if args.max_sentences else [])]
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = validate(compose(config_name="discover", overrides=over), DiscoverConfig)
        row = {"dtype": dtype, "cudnn_attention": cudnn, **model_speed(cfg, args.device, dtype)}
        row.update(store_speed(cfg, cfg.sampling if args.store == "sampled" else None))
        results.append(row)
        shutil.rmtree(ws, ignore_errors=True)
    print(f"device {args.device}; {args.store} store ({args.store_dtype}); {results[0]['words']:,} words in "
          f"{results[0]['batches']} batches of up to {args.batch_size} ({results[0]['shapes']} distinct shapes); "
          f"model {args.model or f'random {args.layers} x {args.hidden}'}")
    print("| dtype | attention | cuDNN attention | model alone, cold (s) | model alone, warm (s) | words/s (warm) | "
          "store: all (s) | shard loop (s) | forward (s) | outside forward |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['dtype']} | {r['attention']} | {'allowed' if r['cudnn_attention'] else 'left out' if args.device.startswith('cuda') else '-'} | "
              f"{r['model_cold_s']:.2f} | {r['model_s']:.2f} | {r['model_words_per_s']:,.0f} | {r['store_s']:.1f} | "
              f"{r['loop_s']:.1f} | {r['forward_s']:.2f} | {r['outside_forward_share']:.0%} |")
    base = next((r for r in results if r["dtype"] == "float32"), None)
    for r in results:
        name = f"{r['dtype']}{' (cuDNN attention allowed)' if r['cudnn_attention'] else ''}"
        if base is not None and r is not base:
            print(f"{name}: model alone {base['model_s'] / r['model_s']:.2f}x float32 warm, "
                  f"{base['model_cold_s'] / r['model_cold_s']:.2f}x cold; store {base['store_s'] / r['store_s']:.2f}x float32")
        if r["profile"]:
            print(f"\n{name}: costliest kernels over 20 batches\n{r['profile']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
