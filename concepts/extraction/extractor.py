"""Batched forward passes over a shard's segments, writing word vectors per layer.

Segments are sorted by length and cut into batches bounded by a sentence count and a padded
subword budget, so padding stays small; the forward pass runs under `torch.inference_mode`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from concepts.extraction.aggregate import aggregate_words
from concepts.extraction.layer_taps import LayerTaps
from concepts.extraction.models import LoadedModel
from concepts.extraction.subwords import Segment


@dataclass
class Timing:
    started: float = field(default_factory=time.perf_counter)
    forward_s: float = 0.0
    subwords: int = 0


def attention_context(device: torch.device, cudnn_attention: bool = False) -> AbstractContextManager:
    """The attention kernels the forward pass may use. On a CUDA device, unless `cudnn_attention`,
    every scaled-dot-product backend but cuDNN's: on Hopper (H100/H200) PyTorch prefers cuDNN's for
    float16/bfloat16, and cuDNN builds an execution plan for each new input shape (hundreds of ms
    each, reported upstream), while length-sorted batches have a new shape almost every batch; the
    flash and memory-efficient kernels need no such plan. Elsewhere: no change."""
    if device.type != "cuda" or cudnn_attention:
        return nullcontext()
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # an older torch, without cuDNN attention either
        return nullcontext()

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def probe_batch(lm: LoadedModel) -> dict:
    """The load-time probe sentences as one padded batch of model inputs on the model's device."""
    from concepts.extraction.models import PROBE_SENTENCES

    texts = [t for t, _ in PROBE_SENTENCES]
    enc = lm.tokenizer(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
    dev = next(lm.model.parameters()).device
    return {"input_ids": enc["input_ids"].to(dev), "attention_mask": enc["attention_mask"].to(dev)}


def make_batches(lengths: list[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Group item indices by length (ascending) into batches of at most `batch_size` items
    and at most `max_batch_tokens` padded tokens (a single longer item gets its own batch)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches, cur, cur_max = [], [], 0
    for i in order:
        n = lengths[i]
        new_max = max(cur_max, n)
        if cur and (len(cur) + 1 > batch_size or new_max * (len(cur) + 1) > max_batch_tokens):
            batches.append(cur)
            cur, new_max = [], n
        cur.append(int(i))
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


class Extractor:
    """Runs a loaded model over segments and hands word vectors to a sink."""

    def __init__(self, lm: LoadedModel, aggregation: str, batch_size: int = 64, max_batch_tokens: int = 16384,
                 out_dtype: torch.dtype = torch.float32, cudnn_attention: bool = False, layers: list[int] | None = None):
        self.lm = lm
        # the layers kept (None: all); a subset is taken by hooks where the family allows it (concepts.layer_taps)
        self.layers = list(range(lm.n_layers)) if layers is None else sorted(layers)
        self.taps = LayerTaps.for_model(lm.model, lm.n_layers, self.layers, probe_batch(lm), lm.family) \
            if layers is not None and len(self.layers) < lm.n_layers else LayerTaps(lm.model, lm.n_layers, self.layers, None)
        self.cudnn_attention = cudnn_attention  # see `attention_context`
        self.out_dtype = out_dtype  # cast on the device before the copy to the host (float16: half the bytes)
        self.aggregation = aggregation
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.device = next(lm.model.parameters()).device
        self.pad_id = lm.tokenizer.pad_token_id
        self.timing = Timing()

    def run(
        self,
        segments: list[Segment],
        sink: Callable[[list[Segment], torch.Tensor], None],
        progress: Callable[[int, int], None] | None = None,
        select: list[np.ndarray] | None = None,
    ) -> None:
        """For each batch, call `sink(batch_segments, vectors)` with `vectors` a CPU tensor
        `[L, W, H]` of `out_dtype` (L: the kept layers): the batch's owned words, segment by segment, in word order.
        `select` (one bool mask per segment over its owned words): only those words are
        aggregated and copied to the host (a sampled store's few rows); `progress` still counts
        every word the model read.

        The sink of a batch runs after the next batch is launched: on a GPU, the host-side work
        (the next batch's inputs, the sink's copies) overlaps the device's, and the vectors come
        back through pinned memory with a non-blocking copy (an event says when they are there)."""
        with torch.inference_mode(), attention_context(self.device, self.cudnn_attention):
            self._run(segments, sink, progress, select)

    def _run(self, segments, sink, progress, select) -> None:
        cuda = self.device.type == "cuda"
        pending = None
        lengths = [len(s.input_ids) for s in segments]
        for batch_ids in make_batches(lengths, self.batch_size, self.max_batch_tokens):
            batch = [segments[i] for i in batch_ids]
            lens = np.array([len(s.input_ids) for s in batch])
            T = int(lens.max())
            mask_np = np.arange(T)[None, :] < lens[:, None]
            ids_np = np.full((len(batch), T), self.pad_id, dtype=np.int64)
            ids_np[mask_np] = np.concatenate([s.input_ids for s in batch])
            ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np.astype(np.int64))
            rows, spans = [], []
            words = 0
            for r, (i, s) in enumerate(zip(batch_ids, batch)):
                own = s.spans[s.own]
                words += len(own)
                if select is not None:
                    own = own[select[i]]
                rows.append(np.full(len(own), r))
                spans.append(own)
            spans_np = np.concatenate(spans)
            n_sub = int((spans_np[:, 1] - spans_np[:, 0]).sum()) if len(spans_np) else 0
            batch_idx, span_t = torch.from_numpy(np.concatenate(rows)), torch.from_numpy(spans_np)
            if cuda:  # pinned, so the copies to the device do not block the host
                ids, mask, batch_idx, span_t = (t.pin_memory() for t in (ids, mask, batch_idx, span_t))
            to_dev = lambda t: t.to(self.device, non_blocking=cuda)  # noqa: E731
            t0 = time.perf_counter()
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            hidden = self.taps(to_dev(ids), to_dev(mask))  # L x [B, T, H]
            if cuda:
                end.record()
            else:
                self.timing.forward_s += time.perf_counter() - t0
            vecs = aggregate_words(hidden, to_dev(batch_idx), to_dev(span_t), self.aggregation,
                                   n_sub).float().to(self.out_dtype)
            del hidden
            if cuda:
                host = torch.empty(vecs.shape, dtype=vecs.dtype, pin_memory=True)
                host.copy_(vecs, non_blocking=True)
                done = torch.cuda.Event()
                done.record()
                timing = (start, end)
            else:  # CPU (a no-op) or another accelerator (MPS): a plain copy
                host, done, timing = vecs.cpu(), None, None
            if pending is not None:
                self._finish(*pending, sink, progress)  # the previous batch, while this one computes
            pending = (batch, host, done, timing, int(mask.sum()), words)
        if pending is not None:
            self._finish(*pending, sink, progress)

    def _finish(self, batch, host: torch.Tensor, done, timing, subwords: int, words: int, sink, progress) -> None:
        if done is not None:
            done.synchronize()  # the vectors are on the host
            self.timing.forward_s += timing[0].elapsed_time(timing[1]) / 1000
        self.timing.subwords += subwords
        sink(batch, host)
        if progress is not None:
            progress(words, subwords)
