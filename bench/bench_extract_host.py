"""The host side of extraction: everything a GPU run does besides the forward pass.

On one H200 (issue 15) the forward pass was 9-16% of extraction: what bounds a GPU run is the
work around it (tokenising, batching, gathering word vectors, copies, shard tables and writes).
That work can be measured on any machine by standing in for the model with one whose forward pass
is free: `InstantModel` returns zeros of the model's shape (`[B, T, H]` for each of L layers,
views of one buffer). The extraction then runs as usual (`concepts.extract.run`), and its time is
the host-side floor of a GPU run; `cProfile` splits it by function (`--profile`). With
`--forward-us-per-token` the stand-in sleeps as a device would compute (the host thread idle, the
GIL free), so what overlaps the forward pass (reading and tokenizing ahead, writes) shows.

Default shape: bert-base (13 layers x 768) with MiniLM's uncased tokenizer, over UD EWT.

    .venv/bin/python bench/bench_extract_host.py --splits dev test --store full --dtype float32
    .venv/bin/python bench/bench_extract_host.py --splits train dev test --store sampled
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class InstantModel(torch.nn.Module):
    """A stand-in whose forward pass costs nothing: L zero tensors `[B, T, H]` (views of one
    buffer, grown when a batch needs more)."""

    def __init__(self, n_layers: int, hidden: int, seconds_per_token: float = 0.0):
        super().__init__()
        self.seconds_per_token = seconds_per_token  # a device's time, spent idle (the GIL released)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the extractor reads the device from it
        self.n_layers, self.hidden = n_layers, hidden
        self.buf = torch.zeros(0)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=True):
        B, T = input_ids.shape
        if self.seconds_per_token:
            time.sleep(B * T * self.seconds_per_token)
        if self.buf.numel() < B * T * self.hidden:
            self.buf = torch.zeros(B * T * self.hidden)
        h = self.buf[: B * T * self.hidden].view(B, T, self.hidden)
        return SimpleNamespace(hidden_states=tuple(h for _ in range(self.n_layers)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", nargs="+", default=["dev", "test"])
    ap.add_argument("--store", choices=["full", "sampled"], default="full")
    ap.add_argument("--dtype", default="float32", help="the store's dtype")
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--batch-size", type=int, default=64, help="the GPU default")
    ap.add_argument("--tokenize-ahead", default="true")
    ap.add_argument("--forward-us-per-token", type=float, default=0.0,
                    help="the stand-in's forward pass sleeps this long per padded token: a GPU's time, during "
                         "which the host is free (as while it waits for the device)")
    ap.add_argument("--profile", type=int, default=0, help="print the N costliest functions")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="more config overrides, e.g. corpus.stream_above=1000 (a corpus read again for each pass)")
    ap.add_argument("--real", action="store_true", help="the configured model itself (the embedded MiniLM), not the stand-in")
    args = ap.parse_args()
    from hydra import compose, initialize_config_dir

    import concepts.annotation.config  # noqa: F401  (registers the schemas of the concepts stages)
    import concepts.extraction.stage as extract_mod
    from concepts.core.cli import CONF_DIR
    from concepts.core.config import validate
    from concepts.discovery.config import DiscoverConfig
    from concepts.extraction.models import load_model
    ws = Path(tempfile.mkdtemp(prefix="extract-host-"))
    over = [f"paths.workspace={ws}", f"corpus.splits=[{','.join(args.splits)}]", "extraction.progress=false",
            f"extraction.store_dtype={args.dtype}", f"extraction.batch_size={args.batch_size}",
            f"extraction.tokenize_ahead={args.tokenize_ahead}", *args.set]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = validate(compose(config_name="discover", overrides=over), DiscoverConfig)
    real = load_model(cfg.model, "cpu", "float32")
    stub = SimpleNamespace(**{**real.__dict__, "model": InstantModel(args.layers, args.hidden, args.forward_us_per_token / 1e6), "n_layers": args.layers,
                              "hidden_size": args.hidden})
    if not args.real:
        extract_mod.load_model = lambda *a, **k: stub
    prof = cProfile.Profile() if args.profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    res = extract_mod.run(cfg, sample=cfg.sampling if args.store == "sampled" else None)
    if prof:
        prof.disable()
    took = time.perf_counter() - t
    words = sum(1 for _ in open(res.store / "sentences.jsonl"))  # sentences
    from concepts.extraction.store import ActivationStore

    store = ActivationStore(res.store)
    rows = len(store.tokens())
    in_corpus = store.manifest.get("sample_stats", {}).get("tokens_in", rows)
    shape = "the real model" if args.real else f"{args.layers} x {args.hidden}"
    print(f"{args.store} store, {shape} {args.dtype}, batch {args.batch_size}, tokenize ahead "
          f"{args.tokenize_ahead}: {words:,} sentences, {in_corpus:,} words, {rows:,} rows stored")
    print(f"host-side extraction: {took:.1f} s in all ({res.loop_seconds:.1f} s in the shard loop), "
          f"{in_corpus / took:,.0f} words/s; the forward pass here: {res.forward_seconds:.2f} s "
          f"({1 - res.forward_seconds / took:.0%} of the time outside it)")
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(args.profile)
        print(s.getvalue())
    shutil.rmtree(ws, ignore_errors=True)


if __name__ == "__main__":
    main()
