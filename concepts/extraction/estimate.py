"""What an extraction will need, from the model's config alone (no weights loaded): the store on
disk, the weights in memory, and the hidden states of one batch. Logged before a new store is
made; for a large model whose store of every layer is large, it names a layer subset."""

from __future__ import annotations

from dataclasses import dataclass

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GLU_FAMILIES = {"llama", "mistral", "mixtral", "gemma", "gemma2", "gemma3", "gemma3_text", "qwen2", "qwen3", "phi3",
                "olmo", "olmo2", "cohere", "granite", "stablelm"}
LARGE_STORE_GB = 50.0  # above this, the message names a layer subset


def _get(config, *names, default=None):
    for n in names:
        v = getattr(config, n, None)
        if isinstance(v, int) and v > 0:
            return v
    return default


def approx_parameters(config) -> int:
    """About how many parameters the `AutoModel` of this config has (embeddings, attention with
    grouped key/value heads, the MLP with a gate for GLU families; no output head): within a few
    percent for the usual decoder and encoder families."""
    cfg = getattr(config, "text_config", None) or config
    h = _get(cfg, "hidden_size", "d_model", "n_embd", default=0)
    layers = _get(cfg, "num_hidden_layers", "n_layer", "num_layers", default=0)
    vocab = _get(cfg, "vocab_size", default=0)
    inter = _get(cfg, "intermediate_size", "n_inner", "d_ff", "ffn_dim", default=4 * h)
    heads = _get(cfg, "num_attention_heads", "n_head", default=1)
    kv = _get(cfg, "num_key_value_heads", default=heads)
    head_dim = _get(cfg, "head_dim", default=h // max(heads, 1))
    attn = 2 * h * heads * head_dim + 2 * h * kv * head_dim
    mlp = (3 if getattr(cfg, "model_type", "") in GLU_FAMILIES else 2) * h * inter
    return int(layers * (attn + mlp) + vocab * h)  # (AutoModel: no output head)


@dataclass
class Needs:
    """Sizes in bytes."""

    words: int
    layers_kept: int
    n_layers: int  # layers in the model (embeddings included)
    hidden: int
    store: int  # the store on disk
    weights: int  # the model's weights in memory
    batch_states: int  # one batch's hidden states of the layers the forward pass keeps
    suggestion: list[int] | None  # a layer subset to name, when the store of every layer is large


def estimate(config, words: int, layers: list[int] | None, store_dtype: str, compute_dtype: str,
             max_batch_tokens: int) -> Needs:
    cfg = getattr(config, "text_config", None) or config
    n_layers = _get(cfg, "num_hidden_layers", "n_layer", "num_layers", default=0) + 1
    hidden = _get(cfg, "hidden_size", "d_model", "n_embd", default=0)
    kept = n_layers if layers is None else len(set(layers))
    store = words * kept * hidden * BYTES[store_dtype]
    weights = approx_parameters(config) * BYTES[compute_dtype]
    batch = max_batch_tokens * hidden * BYTES[compute_dtype] * (n_layers if layers is None else kept + 1)
    suggestion = None
    if layers is None and store / 1e9 > LARGE_STORE_GB and n_layers > 5:
        suggestion = sorted({round(i * (n_layers - 1) / 4) for i in range(5)})
    return Needs(words, kept, n_layers, hidden, store, weights, batch, suggestion)


def describe(n: Needs, human) -> str:
    """One paragraph for the log (`human`: bytes -> text)."""
    text = (f"this extraction needs about {human(n.store)} on disk ({n.words:,} words x {n.layers_kept} of "
            f"{n.n_layers} layers x {n.hidden}), about {human(n.weights)} for the weights and about "
            f"{human(n.batch_states)} for one batch's hidden states (extraction.max_batch_tokens)")
    if n.suggestion is not None:
        part = n.store * len(n.suggestion) / n.layers_kept
        text += (f". A store of every layer of a {n.hidden}-d model is large: extraction.layers="
                 f"[{','.join(map(str, n.suggestion))}] keeps {len(n.suggestion)} layers (about {human(part)}), and "
                 "extraction.store_dtype=float16 halves it")
    return text
