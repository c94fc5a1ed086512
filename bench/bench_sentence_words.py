"""Reading a store's sentences for the explorer, the annotators and the dataset, at the paper's
scale (250,000 sentences: EWT's, cycled, each with its gold tags, as the store writes them).
Side by side in one process, peak Python memory by tracemalloc:

  before  `[s.words for s in store.sentences()]`: every `Sentence`, tags included, then the words
  after   `store.sentence_words()`: the words only, streamed, each word string interned

    .venv/bin/python bench/bench_sentence_words.py [--sentences 250000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from concepts.extraction.store import ActivationStore  # noqa: E402


def write_sentences(folder: Path, n: int) -> None:
    from hydra import compose, initialize_config_dir

    import concepts.annotation.config  # noqa: F401  (registers the schemas of the concepts stages)
    from concepts.core.cli import CONF_DIR
    from concepts.corpus.loading import load_corpus
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="extract", overrides=["corpus=ewt", "corpus.splits=[train,dev,test]"])
    corpus = load_corpus(cfg.corpus)
    lines = [json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in corpus.iter_sentences()]
    with open(folder / "sentences.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(lines[i % len(lines)])


def measure(fn) -> tuple[float, float, object]:
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    took = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 1e9
    tracemalloc.stop()
    return took, peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=250_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        write_sentences(Path(d), args.sentences)
        store = ActivationStore.__new__(ActivationStore)  # only sentences.jsonl is read
        store.path = Path(d)
        size = (Path(d) / "sentences.jsonl").stat().st_size / 1e6
        b_s, b_gb, before = measure(lambda: [s.words for s in store.sentences()])
        a_s, a_gb, after = measure(store.sentence_words)
    print(f"{args.sentences:,} sentences, {sum(map(len, after)):,} words, sentences.jsonl {size:.0f} MB; same words: {before == after}")
    print("| read | seconds (under tracemalloc) | peak Python memory (GB) |\n|---|---:|---:|")
    print(f"| before: every Sentence, then its words | {b_s:.1f} | {b_gb:.2f} |")
    print(f"| after: `sentence_words()` | {a_s:.1f} | {a_gb:.2f} |")


if __name__ == "__main__":
    main()
