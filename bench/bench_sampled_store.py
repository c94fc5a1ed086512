"""Discovery on a fresh workspace: extracting only the sampled tokens (`discovery.extract=sampled`,
the default) against the store of every word (`=all`), side by side in one process: time of
the extraction and of the whole discovery, disk, and whether the concept records are identical.

    .venv/bin/python bench/bench_sampled_store.py --splits train dev --layers 0 6
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", nargs="+", default=["train", "dev"])
    ap.add_argument("--layers", type=int, nargs="+", default=[0, 6])
    ap.add_argument("--k", type=int, default=600)
    args = ap.parse_args()
    from hydra import compose, initialize_config_dir

    import concepts.annotation.config  # noqa: F401  (registers the schemas of the concepts stages)
    import concepts.discovery.stage as discover_mod
    from concepts.core.cli import CONF_DIR
    from concepts.core.config import validate
    from concepts.discovery.config import DiscoverConfig
    from concepts.extraction.store import ActivationStore
    rows, records = [], {}
    root = Path(tempfile.mkdtemp(prefix="bench-sampled-"))
    try:
        for mode in ("all", "sampled"):
            over = [f"paths.workspace={root / mode}", f"corpus.splits=[{','.join(args.splits)}]",
                    f"discovery.layers=[{','.join(map(str, args.layers))}]", f"discovery.k={args.k}",
                    f"discovery.extract={mode}", "extraction.progress=false"]
            with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
                cfg = validate(compose(config_name="discover", overrides=over), DiscoverConfig)
            t = time.perf_counter()
            store = discover_mod.open_store(cfg, for_discovery=True)
            t_extract = time.perf_counter() - t
            res = discover_mod.run(cfg)
            total = time.perf_counter() - t
            disk = sum(f.stat().st_size for f in ActivationStore(store.path).path.rglob("*") if f.is_file()) / 1e9
            records[mode] = {layer: (res.path / f"layer_{layer:02d}" / f"concepts-K{args.k}.jsonl").read_bytes()
                             for layer in args.layers}
            rows.append((mode, store.path.name, t_extract, total, disk, len(store.tokens())))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"MiniLM, EWT {'+'.join(args.splits)}, discovery of layers {args.layers} at K={args.k} from an empty workspace\n")
    print("| discovery.extract | store | extraction (s) | extraction + discovery (s) | store on disk (GB) | rows stored |")
    print("|---|---|---:|---:|---:|---:|")
    for mode, name, te, tt, disk, n in rows:
        print(f"| {mode} | {name} | {te:.1f} | {tt:.1f} | {disk:.3f} | {n:,} |")
    print(f"\nconcept records identical: {records['all'] == records['sampled']}")


if __name__ == "__main__":
    main()
