"""Tiny, locally built replicas of 17 Hugging Face model families, for conformance tests.

`build(family, folder)` trains the family's tokenizer with the `tokenizers` library under that
family's own conventions (normalizer, pre-tokenizer, model type, decoder, post-processor,
special tokens, byte fallback), wraps it in the family's transformers tokenizer class, and saves
it beside a tiny random-weight model of the family (2 layers, seeded), so that
`AutoTokenizer.from_pretrained(folder)` and `AutoModel.from_pretrained(folder)` load them with no
network. Everything is trained on `TRAINING_TEXT`, a few hundred English sentences written below.

Note on transformers 5: a family class with its own `__init__` (BertTokenizer, LlamaTokenizer,
GemmaTokenizer, Qwen2Tokenizer, ...) rebuilds normalizer / pre-tokenizer / decoder from its own
code when loading and keeps only vocab, merges and post-processor from `tokenizer.json`; generic
checkpoints (`PreTrainedTokenizerFast`, i.e. `TokenizersBackend`: Llama 3, ModernBERT, and Mistral,
whose model type maps to the generic backend when `mistral_common` is absent) load
`tokenizer.json` as written. `LOADED_CLASS` records which class `AutoTokenizer` gives back.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path

FAMILIES: list[str] = [
    "bert-cased", "bert-uncased", "roberta", "gpt2", "xlnet", "albert", "xlm-roberta", "deberta-v3",
    "electra", "t5-encoder", "llama2", "llama3", "mistral", "gemma", "qwen2", "gpt-neox", "modernbert",
]

# the transformers tokenizer class each family is wrapped in and saved as
WRAPPER_CLASS: dict[str, str] = {
    "bert-cased": "BertTokenizerFast", "bert-uncased": "BertTokenizerFast", "roberta": "RobertaTokenizerFast",
    "gpt2": "GPT2TokenizerFast", "xlnet": "XLNetTokenizerFast", "albert": "AlbertTokenizerFast",
    "xlm-roberta": "XLMRobertaTokenizerFast", "deberta-v3": "DebertaV2TokenizerFast",
    "electra": "ElectraTokenizerFast", "t5-encoder": "T5TokenizerFast", "llama2": "LlamaTokenizerFast",
    "llama3": "PreTrainedTokenizerFast", "mistral": "LlamaTokenizerFast", "gemma": "GemmaTokenizerFast",
    "qwen2": "Qwen2TokenizerFast", "gpt-neox": "GPTNeoXTokenizerFast", "modernbert": "PreTrainedTokenizerFast",
}

# the class AutoTokenizer gives back (transformers 5 names; `*Fast` names are aliases of these).
# Mistral checkpoints declare LlamaTokenizerFast, but model_type "mistral" maps to the generic
# backend (or MistralCommonBackend when mistral_common is installed), which reads tokenizer.json as is.
LOADED_CLASS: dict[str, str] = {
    **{f: WRAPPER_CLASS[f] for f in FAMILIES},
    "mistral": "PreTrainedTokenizerFast",
}

MODEL_TYPE: dict[str, str] = {
    "bert-cased": "bert", "bert-uncased": "bert", "roberta": "roberta", "gpt2": "gpt2", "xlnet": "xlnet",
    "albert": "albert", "xlm-roberta": "xlm-roberta", "deberta-v3": "deberta-v2", "electra": "electra",
    "t5-encoder": "t5", "llama2": "llama", "llama3": "llama", "mistral": "mistral", "gemma": "gemma",
    "qwen2": "qwen2", "gpt-neox": "gpt_neox", "modernbert": "modernbert",
}

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

MAX_POSITIONS = 512

# ---------------------------------------------------------------------------------------------
# training text

_BASE_SENTENCES = """\
The quick brown fox jumps over the lazy dog.
I don't think it's going to rain today, but you can't be sure.
She got her Ph.D. in Chemistry from a university in the U.S. in 2015.
The company sold 2,000 units in March and 3,500 units in April.
"Well," he said, "that's not what I expected."
We met at a small café in Zürich near the train station.
It's a naïve idea, but it might just work.
My flight to 東京 leaves at 10:45 on Friday 🙂
The U.S. economy grew by 2.5 percent last year.
Dr. Smith and Mr. Jones arrived at 9 a.m. sharp.
He won't stop talking about the well-known author.
They've been living in New York since 1999.
Can't we just go home now? I'm tired.
The price rose from $1,200 to $1,450 in two weeks.
Don't forget to bring the keys, the map and the tickets!
A state-of-the-art system was installed in 2021.
Prof. Miller's lecture on U.K. history starts at noon.
"I can't believe it," she whispered.
Our team finished 3rd out of 25 teams.
The café serves croissants, coffee and tea.
Zürich, Geneva and Basel are cities in Switzerland.
She's a naïve but brilliant student.
We'll see you at the meeting on Monday.
You shouldn't have done that, really.
The population of 東京 is over 13,000,000 people.
I love this song 🙂 so much!
Let's meet at 5 p.m. at the old bridge.
The report, published on 12/03/2020, was 150 pages long.
He said he'd call back, but he didn't.
What's the matter with you today?
It was a long, cold winter in the north.
The children played in the park until dark.
Researchers at the U.N. published new data.
There are 1,000 reasons to stay and only one to leave.
Isn't it strange that nobody noticed?
The so-called experts were wrong again.
She bought three apples, two pears and a melon.
The meeting was postponed (again) until next week.
Please read pages 10-20 before class.
We're not sure who'll win the game.
The old man walked slowly down the road.
Music, art and literature make life richer.
My sister works as a nurse in a big hospital.
The e-mail arrived at 3:15 in the morning.
They can't afford a new car this year.
The film was rated 4.5 out of 5 stars.
I'd rather stay home and read a good book.
Students must submit their essays by Friday.
The river flows through the center of the city.
Her résumé lists five languages and a Ph.D. in physics.
The naïve reader believed every word.
We drank coffee at a café on the corner.
You're right, it's later than I thought.
The government announced a plan worth $2,000,000.
Nobody knows where the money went.
It's been raining since 6 o'clock.
He's the best player on the team, isn't he?
A self-driving car stopped at the red light.
The museum opened in 1889 and closed in 2019.
Some people don't like spicy food.
The U.S. and the U.K. signed the agreement.
She answered: "Yes, of course!"
Let me know if you can't come.
The quick test took only 15 minutes.
I've never seen such a beautiful sunset.
The teacher asked the students to open their books.
In Zürich the trams are always on time.
Water boils at 100 degrees Celsius.
The year 2000 was a leap year.
Can you hear me? I can't hear you!
We stayed at a small hotel near the beach.
The dog barked at the cat, and the cat ran away.
His brother-in-law is a well-known lawyer.
It's not easy to learn a new language.
They'll arrive on the 3rd of June.
The shop sells bread, cheese, wine and fruit.
My favourite city is 東京, but I also like Kyoto.
She smiled 🙂 and waved goodbye.
The committee didn't approve the budget.
Over 40,000 fans watched the final match.
He studied at M.I.T. and then at Stanford.
The word "café" comes from French.
Don't worry, be happy.
The cost was about €50 per person.
A naïve question can lead to a deep answer.
Her dog's name is Max.
The children's books are on the second shelf.
We couldn't find the hotel in the dark.
He'll never know what happened.
The project started in January and ended in December.
Two plus two equals four, and 7 times 8 is 56.
She works from 9 to 5, Monday to Friday.
The mountains near Zürich were covered in snow.
I'm not sure that's a good idea.
The new phone costs 1,299 dollars.
They're going to the U.S. next summer.
It wasn't the first time, and it won't be the last.
The scientist's discovery changed everything.
Ms. Brown teaches math at the local school.
The train was late, so we took a taxi.
People say the café has the best cake in town.
Why don't you ask her yourself?
The data show a 12.5% increase since 2018.
Read the instructions carefully before you start.
The village has about 2,500 inhabitants.
We've got plenty of time, don't we?
He ordered a coffee, a sandwich and a glass of water.
A 19th-century house stands on the hill.
The storm destroyed 300 houses and 2 bridges.
"Stop!" shouted the police officer.
She doesn't eat meat or fish.
The Ph.D. students presented their work at the conference.
The distance is 42.195 kilometres.
It's a long way to the top.
My grandfather was born in 1931.
The book costs 25 dollars, not 52.
Let's not talk about it anymore.
She has lived in Zürich, Paris and 東京.
The phone rang twice, then stopped.
I can't stop thinking about that day.
The cat sat on the mat.
Dogs bark and birds sing.
The weather in the U.S. varies a lot.
We're happy to help you.
He didn't say a word all evening.
The concert starts at 8:30 p.m. sharp.
Thousands of people, maybe 10,000, joined the march.
Their house is bigger than ours.
Everyone's invited to the party 🙂
The naïve plan failed within a week.
Who's afraid of the big bad wolf?
There's a small café next to the bank.
Ten years ago, in 2014, the bridge was built.
She can't swim, but she loves the sea.
A large crowd gathered outside the station.
The results weren't what we'd hoped for.
The lecture will be held in room 204.
The engineers tested the engine for 72 hours.
He's been working here since the 1990s.
Tokyo, also written 東京, is the capital of Japan.
He asked, "Where's the station?"
Turn left at the second street, then go straight.
"""

_SUBJECTS = ["The teacher", "My neighbour", "A young doctor", "The old farmer", "Our manager", "The pilot",
             "Her friend", "The engineer", "A tourist from Zürich", "The café owner", "The Ph.D. student",
             "His daughter", "The U.S. ambassador", "A naïve visitor", "The team captain"]
_VERBS = ["doesn't like", "can't find", "won't forget", "didn't see", "has visited", "wants to buy",
          "is looking for", "talked about", "wrote about", "couldn't believe", "often reads", "always praises"]
_OBJECTS = ["the new library", "a red bicycle", "the quiet village", "2,000 old letters", "the famous museum",
            "the small café", "a well-known painting", "the long report", "three black cats", "the city of 東京",
            "the U.S. embassy", "a strange story", "the broken window", "100 golden coins", "the winter garden"]
_ENDINGS = [".", "!", "?", " today.", " again.", " in 2019.", " at 7 p.m.", ", doesn't she?", ", right?", " 🙂"]


@lru_cache(maxsize=1)
def training_text() -> tuple[str, ...]:
    """The sentences every tokenizer is trained on: the hand-written ones above, plus a few
    hundred generated from subject / verb / object templates (deterministic)."""
    base = [line for line in _BASE_SENTENCES.splitlines() if line.strip()]
    gen = []
    for i in range(360):
        s, v, o, e = (_SUBJECTS[i % len(_SUBJECTS)], _VERBS[(i * 7) % len(_VERBS)],
                      _OBJECTS[(i * 11) % len(_OBJECTS)], _ENDINGS[(i * 13) % len(_ENDINGS)])
        gen.append(f"{s} {v} {o}{e}")
    lower = [s.lower() for s in base[::3]]
    return tuple(base + gen + lower)


# ---------------------------------------------------------------------------------------------
# tokenizers


def _byte_tokens() -> list[str]:
    return [f"<0x{i:02X}>" for i in range(256)]


def _vocab_merges(tok) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _wordpiece(lowercase: bool):
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.train_from_iterator(training_text(), trainers.WordPieceTrainer(
        vocab_size=700, min_frequency=1, special_tokens=specials, show_progress=False,
        continuing_subword_prefix="##"))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def _byte_level_bpe(specials_first: list[str], vocab_size: int, *, specials_last: list[str] = (),
                    pattern: str | None = None, normalizer=None):
    """Byte-level BPE: GPT-2 style (ByteLevel pre-tokenizer with its own regex) when `pattern`
    is None, else Llama-3 / Qwen2 style (regex Split, then ByteLevel without regex)."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import BPE

    tok = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    if normalizer is not None:
        tok.normalizer = normalizer
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.train_from_iterator(training_text(), trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=specials_first, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if specials_last:
        from tokenizers import AddedToken
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials_last])
    return tok


def _sentencepiece_bpe(specials: list[str], vocab_size: int, prepend: bool):
    """SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Gemma): trained on words cut
    at '▁' (as SentencePiece never merges across it), then rebuilt with the specials first, the
    256 byte pieces next and the learnt pieces after, as in those vocabularies."""
    from tokenizers import Tokenizer, pre_tokenizers, trainers
    from tokenizers.models import BPE

    trainer_tok = Tokenizer(BPE(unk_token="<unk>"))
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first" if prepend else "never", split=True)
    trainer_tok.train_from_iterator(training_text(), trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[], show_progress=False, limit_alphabet=400))
    learnt, merges = _vocab_merges(trainer_tok)
    order = specials + _byte_tokens()
    vocab = {t: i for i, t in enumerate(order)}
    for t, _ in sorted(learnt.items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    return Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)), vocab


def _llama_style(family: str):
    from tokenizers import decoders, normalizers, processors

    tok, _ = _sentencepiece_bpe(["<unk>", "<s>", "</s>"], 800, prepend=True)
    # Llama 2 / Mistral v0.1 tokenizer.json (legacy conversion): the normalizer prepends '▁' and
    # turns spaces into '▁'; there is no pre-tokenizer
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", bos)])
    return tok


def _gemma():
    from tokenizers import AddedToken, decoders, normalizers, processors

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    tok, _ = _sentencepiece_bpe(specials, 800, prepend=False)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos>:0 $A:0", pair="<bos>:0 $A:0 <bos>:1 $B:1", special_tokens=[("<bos>", bos)])
    return tok


def _unigram(specials: list[str], unk: str, normalizer, pre_tokenizer, decoder, vocab_size: int = 700):
    from tokenizers import AddedToken, Tokenizer, trainers
    from tokenizers.models import Unigram

    tok = Tokenizer(Unigram())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoder
    tok.train_from_iterator(training_text(), trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token=unk, show_progress=False, max_piece_length=12,
        shrinking_factor=0.75, n_sub_iterations=2))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def _metaspace(prepend_scheme: str = "always", split: bool = True, whitespace_split: bool = True):
    from tokenizers import pre_tokenizers

    meta = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=split)
    return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), meta]) if whitespace_split else meta


def _metaspace_decoder(prepend_scheme: str = "always", split: bool = True):
    from tokenizers import decoders

    return decoders.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=split)


def _spm_normalizer(lowercase: bool = False, strip_accents: bool = False):
    """The SentencePiece `nmt_nfkc` normalization these checkpoints precompile, approximated by
    NFKC (a precompiled charsmap cannot be built without the sentencepiece library), preceded by
    the quote replacements and accent / case folding of ALBERT and XLNet where they apply."""
    from tokenizers import normalizers

    seq = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')] if (lowercase or strip_accents) else []
    if strip_accents:
        seq += [normalizers.NFKD(), normalizers.StripAccents()]
    if lowercase:
        seq.append(normalizers.Lowercase())
    seq.append(normalizers.NFKC())
    return normalizers.Sequence(seq)


def _train(family: str):
    """The trained `tokenizers.Tokenizer` of `family` and the kwargs of its transformers class."""
    from tokenizers import AddedToken, normalizers, processors

    if family in ("bert-cased", "bert-uncased", "electra"):
        lower = family != "bert-cased"
        return _wordpiece(lower), dict(do_lower_case=lower, unk_token="[UNK]", sep_token="[SEP]",
                                       pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    if family == "roberta":
        tok = _byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>"], 700, pattern=None)
        tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                          ("<s>", tok.token_to_id("<s>")),
                                                          trim_offsets=True, add_prefix_space=False)
        return tok, dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                         pad_token="<pad>", mask_token=AddedToken("<mask>", lstrip=True, special=True),
                         add_prefix_space=False, trim_offsets=True)
    if family == "gpt2":
        tok = _byte_level_bpe([], 700, pattern=None)
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
        # GPT-2's tokenizer.json: a ByteLevel post-processor that keeps the offsets untrimmed
        tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
        return tok, dict(unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                         add_prefix_space=False)
    if family == "gpt-neox":
        tok = _byte_level_bpe(["<|endoftext|>", "<|padding|>"], 700, pattern=None, normalizer=normalizers.NFC())
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
        return tok, dict(unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                         pad_token="<|padding|>", add_prefix_space=False, trim_offsets=True)
    if family == "modernbert":
        # OLMo / GPT-NeoX style byte-level BPE with BERT-style specials appended at the end
        tok = _byte_level_bpe(["<|endoftext|>", "<|padding|>"], 700, pattern=None, normalizer=normalizers.NFC(),
                              specials_last=[])
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                                for s in ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]])
        tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, special=True, normalized=False)])
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        return tok, dict(unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                         mask_token=AddedToken("[MASK]", lstrip=True, special=True), clean_up_tokenization_spaces=True,
                         model_input_names=["input_ids", "attention_mask"])
    if family == "llama3":
        specials = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(4)]
        tok = _byte_level_bpe([], 800, pattern=LLAMA3_PATTERN, specials_last=specials)
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(single="<|begin_of_text|>:0 $A:0",
                                          pair="<|begin_of_text|>:0 $A:0 <|begin_of_text|>:1 $B:1",
                                          special_tokens=[("<|begin_of_text|>", bos)]),
        ])
        return tok, dict(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", clean_up_tokenization_spaces=True,
                         model_input_names=["input_ids", "attention_mask"])
    if family == "qwen2":
        tok = _byte_level_bpe([], 800, pattern=QWEN2_PATTERN, normalizer=normalizers.NFC(),
                              specials_last=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
        return tok, dict(bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token=None,
                         add_prefix_space=False)
    if family in ("llama2", "mistral"):
        return _llama_style(family), dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos_token=True,
                                          add_eos_token=False, legacy=True)
    if family == "gemma":
        return _gemma(), dict(bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>",
                              mask_token="<mask>", add_bos_token=True, add_eos_token=False)
    if family == "xlnet":
        specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
        tok = _unigram(specials, "<unk>", _spm_normalizer(lowercase=False, strip_accents=True), _metaspace(),
                       _metaspace_decoder())
        tok.post_processor = processors.TemplateProcessing(
            single="$A:0 <sep>:0 <cls>:2", pair="$A:0 <sep>:0 $B:1 <sep>:1 <cls>:2",
            special_tokens=[("<sep>", tok.token_to_id("<sep>")), ("<cls>", tok.token_to_id("<cls>"))])
        return tok, dict(do_lower_case=False, keep_accents=False, remove_space=True, bos_token="<s>",
                         eos_token="</s>", unk_token="<unk>", sep_token="<sep>", pad_token="<pad>",
                         cls_token="<cls>", mask_token=AddedToken("<mask>", lstrip=True, special=True),
                         additional_special_tokens=["<eop>", "<eod>"], padding_side="left")
    if family == "albert":
        specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
        tok = _unigram(specials, "<unk>", _spm_normalizer(lowercase=True, strip_accents=True), _metaspace(),
                       _metaspace_decoder())
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
        return tok, dict(do_lower_case=True, keep_accents=False, bos_token="[CLS]", eos_token="[SEP]",
                         unk_token="<unk>", sep_token="[SEP]", pad_token="<pad>", cls_token="[CLS]",
                         mask_token=AddedToken("[MASK]", lstrip=True, special=True))
    if family == "xlm-roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>"]
        tok = _unigram(specials, "<unk>", _spm_normalizer(), _metaspace(), _metaspace_decoder())
        tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
        tok.post_processor = processors.TemplateProcessing(
            single="<s>:0 $A:0 </s>:0", pair="<s>:0 $A:0 </s>:0 </s>:0 $B:0 </s>:0",
            special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
        return tok, dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                         pad_token="<pad>", mask_token=AddedToken("<mask>", lstrip=True, special=True))
    if family == "deberta-v3":
        from tokenizers import Regex

        specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
        norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Strip(left=False, right=True),
                                     normalizers.Replace(Regex(r" {2,}"), " ")])
        tok = _unigram(specials, "[UNK]", norm, _metaspace(whitespace_split=False), _metaspace_decoder())
        tok.add_special_tokens([AddedToken("[MASK]", special=True, normalized=False)])
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
        return tok, dict(do_lower_case=False, split_by_punct=False, bos_token="[CLS]", eos_token="[SEP]",
                         unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                         mask_token="[MASK]")
    if family == "t5-encoder":
        specials = ["<pad>", "</s>", "<unk>"]
        tok = _unigram(specials, "<unk>", _spm_normalizer(), _metaspace(), _metaspace_decoder())
        extra = [f"<extra_id_{i}>" for i in range(99, -1, -1)]
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in extra])
        tok.post_processor = processors.TemplateProcessing(
            single="$A:0 </s>:0", pair="$A:0 </s>:0 $B:0 </s>:0", special_tokens=[("</s>", tok.token_to_id("</s>"))])
        return tok, dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=100,
                         additional_special_tokens=list(reversed(extra)))
    raise ValueError(f"unknown family {family!r}; use one of {', '.join(FAMILIES)}")


_TRAIN_LOCK = threading.Lock()
_TRAINED: dict[str, tuple] = {}


def trained_tokenizer(family: str):
    """The trained `tokenizers.Tokenizer` of `family` (cached per process) and its class kwargs."""
    with _TRAIN_LOCK:
        if family not in _TRAINED:
            _TRAINED[family] = _train(family)
        tok, kwargs = _TRAINED[family]
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tok.to_str()), dict(kwargs)


def wrap_tokenizer(family: str):
    """The trained tokenizer wrapped in the family's transformers class."""
    import transformers

    tok, kwargs = trained_tokenizer(family)
    cls = getattr(transformers, WRAPPER_CLASS[family])
    return cls(tokenizer_object=tok, model_max_length=MAX_POSITIONS, **kwargs)


# ---------------------------------------------------------------------------------------------
# models


def _ids(tok) -> dict[str, int | None]:
    def tid(t):
        return None if t is None else tok.convert_tokens_to_ids(str(t))
    return dict(pad_token_id=tid(tok.pad_token), bos_token_id=tid(tok.bos_token), eos_token_id=tid(tok.eos_token))


def _model(family: str, tok):
    import transformers as tf

    vocab = len(tok)
    ids = _ids(tok)
    small = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    if family in ("bert-cased", "bert-uncased"):
        cfg = tf.BertConfig(**small, max_position_embeddings=MAX_POSITIONS, pad_token_id=ids["pad_token_id"])
        return tf.BertModel(cfg)
    if family == "electra":
        cfg = tf.ElectraConfig(**small, embedding_size=16, max_position_embeddings=MAX_POSITIONS,
                               pad_token_id=ids["pad_token_id"])
        return tf.ElectraModel(cfg)
    if family == "roberta":
        cfg = tf.RobertaConfig(**small, max_position_embeddings=MAX_POSITIONS + 2, type_vocab_size=1, **ids)
        return tf.RobertaModel(cfg)
    if family == "xlm-roberta":
        cfg = tf.XLMRobertaConfig(**small, max_position_embeddings=MAX_POSITIONS + 2, type_vocab_size=1, **ids)
        return tf.XLMRobertaModel(cfg)
    if family == "albert":
        cfg = tf.AlbertConfig(vocab_size=vocab, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=37, max_position_embeddings=MAX_POSITIONS,
                              **ids)
        return tf.AlbertModel(cfg)
    if family == "deberta-v3":
        cfg = tf.DebertaV2Config(**small, max_position_embeddings=MAX_POSITIONS, relative_attention=True,
                                 position_buckets=256, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
                                 position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True,
                                 type_vocab_size=0, hidden_act="gelu", **ids)
        return tf.DebertaV2Model(cfg)
    if family == "xlnet":
        cfg = tf.XLNetConfig(vocab_size=vocab, d_model=32, n_layer=2, n_head=2, d_inner=37, ff_activation="gelu",
                             mem_len=None, **ids)
        return tf.XLNetModel(cfg)
    if family == "t5-encoder":
        cfg = tf.T5Config(vocab_size=vocab, d_model=32, d_kv=16, d_ff=37, num_layers=2, num_decoder_layers=2,
                          num_heads=2, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                          feed_forward_proj="relu", pad_token_id=ids["pad_token_id"], eos_token_id=ids["eos_token_id"],
                          decoder_start_token_id=ids["pad_token_id"])
        return tf.T5Model(cfg)
    if family == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab, n_positions=MAX_POSITIONS, n_embd=32, n_layer=2, n_head=2,
                            bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"])
        return tf.GPT2Model(cfg)
    if family == "gpt-neox":
        cfg = tf.GPTNeoXConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=MAX_POSITIONS, rotary_pct=0.25,
                               use_parallel_residual=True, **ids)
        return tf.GPTNeoXModel(cfg)
    decoder = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, intermediate_size=64, max_position_embeddings=MAX_POSITIONS, **ids)
    if family == "llama2":
        return tf.LlamaModel(tf.LlamaConfig(**decoder, rms_norm_eps=1e-5))
    if family == "llama3":
        return tf.LlamaModel(tf.LlamaConfig(**decoder, rms_norm_eps=1e-5, rope_theta=500000.0))
    if family == "mistral":
        return tf.MistralModel(tf.MistralConfig(**decoder, sliding_window=4096))
    if family == "qwen2":
        return tf.Qwen2Model(tf.Qwen2Config(**decoder, use_sliding_window=False))
    if family == "gemma":
        return tf.GemmaModel(tf.GemmaConfig(**{**decoder, "num_key_value_heads": 1}, head_dim=8,
                                            hidden_activation="gelu_pytorch_tanh"))
    if family == "modernbert":
        t = tok.convert_tokens_to_ids
        cfg = tf.ModernBertConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                  num_attention_heads=2, max_position_embeddings=MAX_POSITIONS,
                                  global_attn_every_n_layers=2, local_attention=16, pad_token_id=t("[PAD]"),
                                  cls_token_id=t("[CLS]"), sep_token_id=t("[SEP]"), bos_token_id=t("[CLS]"),
                                  eos_token_id=t("[SEP]"))
        return tf.ModernBertModel(cfg)
    raise ValueError(f"unknown family {family!r}")


# ---------------------------------------------------------------------------------------------
# build

_STAMP = "families-build.json"
_VERSION = 4

# tokenizer_config.json fields as the real checkpoints ship them, where transformers 5 writes
# something else: Meta's Llama 3 and answerdotai's ModernBERT declare the generic fast class,
# Llama 2 / Mistral v0.1 spell out their BOS-only template
AS_SHIPPED: dict[str, dict] = {
    "llama3": {"tokenizer_class": "PreTrainedTokenizerFast"},
    "modernbert": {"tokenizer_class": "PreTrainedTokenizerFast"},
    "llama2": {"add_bos_token": True, "add_eos_token": False},
    "mistral": {"add_bos_token": True, "add_eos_token": False},
}


def build(family: str, folder: Path) -> Path:
    """Save `family`'s tokenizer and a tiny seeded random model into `folder` (created if needed)
    and return it. A folder this function already filled for the same family is reused."""
    import torch

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; use one of {', '.join(FAMILIES)}")
    folder = Path(folder)
    stamp = folder / _STAMP
    if stamp.exists():
        try:
            if json.loads(stamp.read_text()) == {"family": family, "version": _VERSION}:
                return folder
        except ValueError:
            pass
    folder.mkdir(parents=True, exist_ok=True)
    tok = wrap_tokenizer(family)
    tok.save_pretrained(folder)
    if family in AS_SHIPPED:
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg.update(AS_SHIPPED[family])
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    torch.manual_seed(FAMILIES.index(family))
    model = _model(family, tok).to(torch.float32).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # with config.json beside it (model_type decides for some families), the class comes back
    from transformers import AutoTokenizer

    loaded = type(AutoTokenizer.from_pretrained(folder)).__name__
    expected = getattr(__import__("transformers"), LOADED_CLASS[family]).__name__
    if loaded != expected:
        raise RuntimeError(f"{family}: AutoTokenizer loads {loaded} from {folder}, expected {expected}")
    stamp.write_text(json.dumps({"family": family, "version": _VERSION}))
    return folder
