"""Hidden states of chosen layers only (`extraction.layers`), where the model allows it.

`model(..., output_hidden_states=True)` keeps every layer's `[B, T, H]` states until the batch is
done, and runs every block. For a subset, forward hooks on the model's blocks take the states of
the chosen layers as they pass (layer k, k >= 1, is block k-1's output; layer 0 the input of
block 0) and stop the forward pass after the deepest one; the last layer, when chosen, is the
model's own `last_hidden_state` (after its final norm). Whether this gives exactly the states of
`output_hidden_states` depends on the family's code, so `LayerTaps.for_model` checks it on the
load-time probe sentences and falls back to the full pass (keeping the chosen layers) when not.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised by the deepest hook: the rest of the forward pass is not needed."""


def find_blocks(model: torch.nn.Module, n_blocks: int) -> torch.nn.ModuleList | None:
    """The model's list of transformer blocks: the first `ModuleList` of `n_blocks` modules."""
    for _, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_blocks:
            return mod
    return None


def _hidden(out):
    return out[0] if isinstance(out, (tuple, list)) else out


class LayerTaps:
    """Run the model and return the hidden states of `layers` (sorted, 0 = embeddings)."""

    def __init__(self, model: torch.nn.Module, n_layers: int, layers: list[int], blocks: torch.nn.ModuleList | None):
        self.model = model
        self.n_layers = n_layers
        self.layers = list(layers)
        self.blocks = blocks  # None: the full pass, then the chosen layers

    @classmethod
    def for_model(cls, model: torch.nn.Module, n_layers: int, layers: list[int], probe: dict | None = None,
                  family: str = "") -> LayerTaps:
        """Taps by hooks when they reproduce `output_hidden_states` on `probe` (model inputs), else
        the full pass. Every layer chosen: the full pass."""
        full = cls(model, n_layers, layers, None)
        if len(layers) == n_layers:
            return full
        blocks = find_blocks(model, n_layers - 1)
        if blocks is None or probe is None:
            log.info("layers %s of %s: no block list found; the forward pass computes every layer", layers, family)
            return full
        taps = cls(model, n_layers, layers, blocks)
        with torch.inference_mode():
            want = full(**probe)
            try:
                got = taps(**probe)
            except Exception as e:  # a family whose blocks take or give other things
                log.info("layer taps do not fit model family %s (%s); the forward pass computes every layer", family, e)
                return full
        if all(g.shape == w.shape and torch.allclose(g.float(), w.float(), atol=1e-5, rtol=1e-4) for g, w in zip(got, want)):
            return taps
        log.info("layer taps of model family %s differ from its hidden states; the forward pass computes every layer",
                 family)
        return full

    @property
    def computes_all(self) -> bool:
        return self.blocks is None

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """`[len(layers)]` tensors `[B, T, H]`."""
        if self.blocks is None:
            hs = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
            return [hs[k] for k in self.layers]
        got: dict[int, torch.Tensor] = {}
        last = self.n_layers - 1
        inner = [k for k in self.layers if k < last]
        deepest = max(inner) if inner and last not in self.layers else None
        handles = []

        def pre(module, args, kwargs):
            got[0] = args[0] if args else kwargs["hidden_states"]
            if deepest == 0:
                raise _Stop

        def post_for(k: int):
            def post(module, args, out):
                got[k] = _hidden(out)
                if k == deepest:
                    raise _Stop
            return post

        try:
            if 0 in inner:
                handles.append(self.blocks[0].register_forward_pre_hook(pre, with_kwargs=True))
            for k in inner:
                if k >= 1:
                    handles.append(self.blocks[k - 1].register_forward_hook(post_for(k)))
            try:
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=False)
                if last in self.layers:
                    got[last] = out.last_hidden_state
            except _Stop:
                pass
        finally:
            for h in handles:
                h.remove()
        return [got[k] for k in self.layers]
