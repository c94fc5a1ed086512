"""Extraction benchmark: this extractor vs a one-sentence-at-a-time Hugging Face loop.

Each method runs in its own child process (so peak memory is its own), one after the other,
on the same sentences; the parent prints a table and, with --write, records it in
bench/RESULTS.md.

    .venv/bin/python bench/bench_extract.py --sentences 2000          # default model, EWT train
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _overrides(ws: str, n: int, *extra: str) -> list[str]:
    return [f"paths.workspace={ws}", f"corpus.max_sentences={n}", "extraction.progress=false",
            "extraction.device=cpu", *extra]


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    import concepts.extraction.stage  # noqa: F401  (registers the schema)
    from concepts.core.cli import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="extract", overrides=overrides)


def child_loop(ws: str, n: int) -> dict:
    """What NeuroX-style extractors do: one sentence per forward pass, last subword per word."""
    import numpy as np
    import torch

    from concepts.core.config import validate
    from concepts.corpus import load_corpus
    from concepts.extraction.config import ExtractConfig
    from concepts.extraction.models import load_model

    cfg = validate(_compose(_overrides(ws, n)), ExtractConfig)
    sentences = load_corpus(cfg.corpus).sentences
    lm = load_model(cfg.model, "cpu", "float32")
    words, fwd = 0, 0.0
    out = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in sentences:
            enc = lm.tokenizer([s.words], is_split_into_words=True, return_tensors="pt")
            t1 = time.perf_counter()
            hs = lm.model(**enc, output_hidden_states=True).hidden_states
            fwd += time.perf_counter() - t1
            wid = enc.word_ids(0)
            last = {w: i for i, w in enumerate(wid) if w is not None}
            idx = [last[w] for w in range(len(s.words))]
            out.append(np.stack([h[0, idx].numpy() for h in hs]))
            words += len(s.words)
    took = time.perf_counter() - t0
    return {"words": words, "seconds": took, "forward_seconds": fwd}


def child_ours(ws: str, n: int, dtype: str, batch_size: int) -> dict:
    import concepts.extraction.stage as ex

    r = ex.run(_compose(_overrides(ws, n, f"extraction.dtype={dtype}", f"extraction.batch_size={batch_size}")))
    return {"words": r.words_written, "seconds": r.loop_seconds, "forward_seconds": r.forward_seconds,
            "store": str(r.store)}


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def deviation(store_a: str, store_b: str) -> dict:
    import numpy as np

    from concepts.extraction.store import ActivationStore

    a, b = ActivationStore(store_a), ActivationStore(store_b)
    worst_abs, worst_rel, min_cos = 0.0, 0.0, 1.0
    for layer in range(a.n_layers):
        x, y = np.asarray(a.layer(layer), dtype=np.float64), np.asarray(b.layer(layer), dtype=np.float64)
        d = np.abs(x - y)
        worst_abs = max(worst_abs, float(d.max()))
        worst_rel = max(worst_rel, float(d.max() / np.abs(x).max()))
        cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
        min_cos = min(min_cos, float(cos.min()))
    return {"max_abs": worst_abs, "max_rel_to_layer_max": worst_rel, "min_cosine": min_cos}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    ap.add_argument("--child", nargs="*")
    a = ap.parse_args()
    if a.child:
        kind, ws, n, *rest = a.child
        res = child_loop(ws, int(n)) if kind == "loop" else child_ours(ws, int(n), rest[0], int(rest[1]))
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return
    ws = tempfile.mkdtemp(prefix="bench-extract-")
    n = str(a.sentences)
    rows = {
        "one-sentence HF loop (float32)": run_child(["loop", ws, n]),
        f"this extractor, float32, batch {a.batch_size}": run_child(["ours", ws, n, "float32", str(a.batch_size)]),
        f"this extractor, bfloat16, batch {a.batch_size}": run_child(["ours", ws, n, "bfloat16", str(a.batch_size)]),
    }
    names = list(rows)
    base = rows[names[0]]["words"] / rows[names[0]]["seconds"]
    lines = [
        f"Default model (MiniLM-L6, 7 layers x 384), {a.sentences} EWT train sentences, "
        f"{rows[names[0]]['words']} words, torch threads={os.cpu_count()} cores, CPU.",
        "",
        "| method | words/s | vs loop | total s | forward s | overhead (non-forward) | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        wps = r["words"] / r["seconds"]
        over = (r["seconds"] - r["forward_seconds"]) / r["seconds"]
        lines.append(f"| {name} | {wps:,.0f} | {wps / base:.2f}x | {r['seconds']:.1f} | {r['forward_seconds']:.1f} | "
                     f"{over:.1%} | {r['peak_rss_mb']:,.0f} |")
    dev = deviation(rows[names[1]]["store"], rows[names[2]]["store"])
    lines += ["", f"bfloat16 vs float32 over all layers: largest absolute deviation {dev['max_abs']:.4f}, "
              f"largest deviation relative to the layer's largest |value| {dev['max_rel_to_layer_max']:.2%}, "
              f"lowest per-word cosine similarity {dev['min_cosine']:.4f}."]
    text = "\n".join(lines)
    print(text)
    if a.write:
        cmd = f".venv/bin/python bench/bench_extract.py --sentences {a.sentences} --batch-size {a.batch_size}"
        from results import append_results

        append_results("## Extraction", cmd, text)


if __name__ == "__main__":
    main()
