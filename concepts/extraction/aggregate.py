"""Subword vectors -> word vectors, for a padded batch, all layers at once."""

from __future__ import annotations

import torch


def aggregate_words(hidden, batch_idx: torch.Tensor, spans: torch.Tensor, how: str,
                    n_subwords: int | None = None) -> torch.Tensor:
    """Aggregate subword vectors into word vectors.

    Args:
        hidden: `[L, B, T, H]` hidden states of every layer: a tensor, or a sequence of L
            `[B, T, H]` tensors (the model's `hidden_states`, not stacked, so not copied).
        batch_idx: `[W]` the batch row of each word.
        spans: `[W, 2]` subword span `[start, end)` of each word within its row.
        how: `first`, `last` or `mean` subword.
        n_subwords: for `mean`, the total length of the spans when the caller knows it on the
            host; on a GPU it spares a wait for the device to learn the output size.

    Returns:
        `[L, W, H]` word vectors.
    """
    L = len(hidden)
    B, T, H = hidden[0].shape
    device = hidden[0].device
    base = batch_idx * T

    def gather(pos: torch.Tensor) -> torch.Tensor:  # [L, len(pos), H]
        return torch.stack([h.reshape(B * T, H).index_select(0, pos) for h in hidden])

    if how == "first":
        return gather(base + spans[:, 0])
    if how == "last":
        return gather(base + spans[:, 1] - 1)
    if how == "mean":
        lengths = spans[:, 1] - spans[:, 0]
        kw = {} if n_subwords is None else {"output_size": n_subwords}
        word = torch.repeat_interleave(torch.arange(len(spans), device=spans.device), lengths, **kw)
        start = torch.repeat_interleave(base + spans[:, 0], lengths, **kw)
        within = torch.arange(len(word), device=spans.device) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths, **kw
        )
        out = torch.zeros(L, len(spans), H, dtype=torch.float32, device=device)
        out.index_add_(1, word, gather(start + within).float())
        return out / lengths.to(out.dtype)[None, :, None]
    raise ValueError(f"unknown aggregation {how!r}; use first, last or mean")
