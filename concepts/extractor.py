"""Batched forward passes over a shard's segments, writing word vectors per layer.

Segments are sorted by length and cut into batches bounded by a sentence count and a padded
subword budget, so padding stays small; the forward pass runs under `torch.inference_mode`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from concepts.aggregate import aggregate_words
from concepts.models import LoadedModel
from concepts.subwords import Segment


@dataclass
class Timing:
    started: float = field(default_factory=time.perf_counter)
    forward_s: float = 0.0
    subwords: int = 0


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
                 out_dtype: torch.dtype = torch.float32):
        self.lm = lm
        self.out_dtype = out_dtype  # cast on the device before the copy to the host (float16: half the bytes)
        self.aggregation = aggregation
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.device = next(lm.model.parameters()).device
        self.pad_id = lm.tokenizer.pad_token_id
        self.timing = Timing()

    @torch.inference_mode()
    def run(
        self,
        segments: list[Segment],
        sink: Callable[[list[Segment], torch.Tensor], None],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """For each batch, call `sink(batch_segments, vectors)` with `vectors` a CPU tensor
        `[L, W, H]` of `out_dtype`: the batch's owned words, segment by segment, in word order."""
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
            for r, s in enumerate(batch):
                own = s.spans[s.own]
                rows.append(np.full(len(own), r))
                spans.append(own)
            batch_idx = torch.from_numpy(np.concatenate(rows)).to(self.device)
            span_t = torch.from_numpy(np.concatenate(spans)).to(self.device)
            t0 = time.perf_counter()
            out = self.lm.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), output_hidden_states=True)
            hidden = out.hidden_states  # L x [B, T, H]
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.timing.forward_s += time.perf_counter() - t0
            vecs = aggregate_words(hidden, batch_idx, span_t, self.aggregation).float().to(self.out_dtype).cpu()
            self.timing.subwords += int(mask.sum())
            sink(batch, vecs)
            if progress is not None:
                progress(vecs.shape[1], int(mask.sum()))
