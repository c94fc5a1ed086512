"""Conformance of `concepts.api.extract` across 17 model families, as a Markdown table.

Builds each family's tiny local replica (`tests/families.py`) and compares the project's word
vectors with the independent reference (`tests/word_reference.py`) on the conformance test's
sentences: real UD-style sentences (first / last / mean), a padded batch of ~40 sentences, a long
sentence cut into windows (max_length 64) and pre-split words input.

    python bench/bench_model_families.py                 # every family
    python bench/bench_model_families.py --families gpt2 gemma --folder /tmp/families
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _short(e: BaseException) -> str:
    return type(e).__name__


def bench_family(family: str, root: Path) -> dict:
    import test_model_families as T
    from families import MODEL_TYPE, build
    from word_reference import AGGREGATIONS, tokenizer

    row = {"family": family}
    t0 = time.time()
    d = build(family, root / family)
    row["build_s"] = time.time() - t0
    row["tokenizer"] = type(tokenizer(d)).__name__

    # real sentences, every aggregation: a word differs if any layer of any aggregation does
    sents = T.real_sentences()
    try:
        bad, max_diff, worst = set(), 0.0, ""
        for agg in AGGREGATIONS:
            vecs = T.api_extract(d, "real", sents, aggregation=agg)
            res = T.compare(d, sents, vecs, agg)
            if res["max_diff"] > max_diff:
                max_diff, worst = res["max_diff"], res["worst"]
            bad.update(_differing_words(T, d, sents, vecs, agg))
        row.update(words=res["words"], differing=len(bad), max_diff=f"{max_diff:.2e}", worst=worst)
    except Exception as e:  # noqa: BLE001 - reported in the table
        row.update(words=sum(len(s.words) for s in sents), differing=_short(e), max_diff=_short(e))

    row["padded"] = _check(lambda: [T.assert_close(d, T.padded_batch(), T.api_extract(
        d, "padded", T.padded_batch(), aggregation=agg, batch_size=len(T.padded_batch())), agg)
        for agg in AGGREGATIONS])
    long = T.long_sentence()
    row["windows"] = _check(lambda: [T.assert_close(d, [long], T.api_extract(
        d, "long", [long], aggregation=agg, long_sentences="window", max_length=64), agg, max_length=64)
        for agg in AGGREGATIONS])

    kw = T.words_mode_tokenizer_kwargs(d, family, T.WORDS_SENTENCES)
    try:
        vecs = T.api_extract(d, "words", T.WORDS_SENTENCES, aggregation="mean", input="words")
        if kw is None:
            row["words_mode"] = "ran (expected an error)"
        else:
            res = T.compare(d, T.WORDS_SENTENCES, vecs, "mean", tokenizer_kwargs=kw or None)
            row["words_mode"] = "ok" if res["differing"] == 0 else f"{res['differing']} words differ"
    except Exception as e:  # noqa: BLE001
        from concepts.core.errors import UserError

        named = isinstance(e, UserError) and MODEL_TYPE[family] in str(e) and "extraction.input=text" in str(e)
        if kw is None:
            row["words_mode"] = "error named" if named else f"{_short(e)} (not naming {MODEL_TYPE[family]})"
        else:
            row["words_mode"] = f"{_short(e)} (expected ok)"
    return row


def _differing_words(T, d, sents, vecs, agg):
    import numpy as np
    from word_reference import reference_all

    rows = vecs.tokens["sentence"].to_numpy()
    for i, s in enumerate(sents):
        _, text, spans = T.text_and_spans(s)
        ref = reference_all(d, text, spans)[agg]
        got = vecs.layers[:, np.flatnonzero(rows == i)].astype(np.float64)
        diff = np.abs(got - ref).max(axis=(0, 2))
        for j in np.flatnonzero(~(diff <= T.TOL)):
            yield i, int(j)


def _check(fn) -> str:
    try:
        fn()
        return "ok"
    except AssertionError as e:
        return "FAIL: " + str(e).split(";")[0][:60]
    except Exception as e:  # noqa: BLE001
        return _short(e)


def main(argv=None) -> int:
    from families import FAMILIES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="*", default=FAMILIES, choices=FAMILIES, help="families to run (default all)")
    ap.add_argument("--folder", type=Path, default=None, help="where to build the replicas (default a temp folder)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the models are tiny)")
    ap.add_argument("--worst", action="store_true", help="also print the worst word of each family")
    args = ap.parse_args(argv)

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    t0 = time.time()
    if args.folder is not None:
        root = args.folder
        rows = [bench_family(f, root) for f in args.families]
    else:
        with tempfile.TemporaryDirectory(prefix="families-") as tmp:
            root = Path(tmp)
            rows = [bench_family(f, root) for f in args.families]
    build_s = sum(r["build_s"] for r in rows)

    print("| family | tokenizer class | words compared | words differing (> 1e-4) | max abs diff "
          "| padded batch ok | windows ok | words mode |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['tokenizer']} | {r['words']} | {r['differing']} | {r['max_diff']} "
              f"| {r['padded']} | {r['windows']} | {r['words_mode']} |")
    print()
    where = f" in {root}" if args.folder is not None else ""
    print(f"built {len(rows)} families in {build_s:.1f}s{where}; whole run {time.time() - t0:.1f}s")
    if args.worst:
        for r in rows:
            if r.get("worst"):
                print(f"- {r['family']}: worst word {r['worst']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
