"""The annotation stage's config: `annotator.*`, `prompt.*`, `annotation.*`, `scoring.*`, and the
`annotate` and `score` apps' schemas."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from concepts.core.errors import UserError
from concepts.discovery.config import DiscoverConfig


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
        from concepts.core.secrets import KEY_ENV_MESSAGE, looks_like_key

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


ConfigStore.instance().store(name="annotate_schema", node=AnnotateConfig)
ConfigStore.instance().store(name="score_schema", node=ScoreConfig)
