"""Reading an LLM's reply to a labelling prompt: a label only when the reply holds one.

A label is accepted by its shape, not by the absence of known refusals: a short noun phrase
(at most `max_label_words` words outside parentheses), not in the first or second person, not
a sentence about the words, not an abstention. Everything else gets a status and no label:

    refused      the model declines the task ("I can't help with that.", "I'd rather not ...")
    none         the model says no label applies ("NA", "No clear pattern", "Unclear",
                 "There is no shared theme.", JSON {"label": null})
    unparseable  nothing that reads as a label (empty, a sentence, first person, JSON without
                 a label key such as {"status": "error"})
    filtered / truncated   the API's finish_reason said so

Labels are recovered from the wrappers models put around them: reasoning blocks, code fences,
JSON objects with a label-like key, markdown headers and bold key lines ("### Label" then the
label on the next line, "**Label:** X"), key lines with a colon or a dash ("Label — X"),
preamble lines ("Sure! Here is the label:"), sentences around the label ("I would call this
group 'Past tense verbs'", "The common theme is days of the week") and hedges ("I'm not sure,
but perhaps: X"). The same label inside JSON and in plain text reads the same
({"label": "Concept: Animals"} and "Concept: Animals" both give "Animals").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

# bumped whenever a stored reply could be read differently: annotations are re-read from the cache
PARSER_VERSION = 2

CONCEPT_TYPES = ("lexical", "morphological", "syntactic", "semantic", "uninterpretable")

# Penn Treebank tags (45 + the UD EWT extras ADD, AFX, GW, HYPH, NFP, XX).
PENN_TAGS = frozenset("""CC CD DT EX FW IN JJ JJR JJS LS MD NN NNS NNP NNPS PDT POS PRP PRP$ RB RBR RBS RP SYM TO
UH VB VBD VBG VBN VBP VBZ WDT WP WP$ WRB $ # `` '' -LRB- -RRB- , . : ADD AFX GW HYPH NFP XX""".split())


@dataclass
class Parsed:
    status: str  # ok | none (nothing applies) | refused | filtered | truncated | unparseable | error
    label: str | None = None
    description: str | None = None
    concept_type: str | None = None

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "none")


_NORMAL = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "\u00a0": " "})  # one for one
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")

_CANT = r"(?:can'?t|cannot|can\s+not|won'?t|will\s+not|am\s+unable\s+to|'?m\s+unable\s+to|am\s+not\s+able\s+to|'?m\s+not\s+able\s+to)"
_TASK_VERB = (r"(?:help|assist|do|comply|provide|label|name|answer|complete|fulfil+|participate|engage|continue|process|"
              r"categori[sz]e|classify|create|generate|give|support|proceed|perform|identify|describe|tell|say|determine|"
              r"respond|reply|fulfill|work|go)")
# a refusal: how the reply (or its answer line) starts
_REFUSAL_START = re.compile(
    r"^\W*(?:(?:i'?m|i\s+am)\s+(?:so\s+|very\s+|really\s+|truly\s+)?sorry|sorry(?:\s*[,.!:;\u2013\u2014]|\s+-\s|\s+(?:but|i)\b|\s*$)|(?:i\s+)?apologi[sz]e|my\s+apologies|"
    r"unfortunately\b|regrettably\b|as\s+an?\s+(?:ai|assistant|ai\s+assistant|ai\s+language\s+model|language\s+model)\b|"
    r"as\s+a\s+(?:responsible\s+)?(?:ai|language\s+model|assistant)\b|"
    rf"(?:i\s+)?{_CANT}\s+{_TASK_VERB}\b|unable\s+to\s+{_TASK_VERB}\b|"
    r"i\s+(?:must|have\s+to|need\s+to|will\s+have\s+to)\s+(?:respectfully\s+|politely\s+)?(?:decline|refuse|pass)|"
    r"i\s+(?:respectfully\s+|politely\s+)?(?:decline|refuse)\b|"
    r"(?:i'?d|i\s+would|i)\s+(?:rather|prefer\s+to)\s+not\b|(?:i'?d|i\s+would|i)\s+prefer\s+not\b|"
    r"(?:i'?m|i\s+am)\s+(?:afraid|not\s+(?:comfortable|going\s+to|willing|able|in\s+a\s+position))|"
    r"i\s+(?:do\s+not|don'?t)\s+(?:feel\s+comfortable|think\s+(?:i\s+should|it'?s\s+appropriate)|want\s+to)|"
    rf"i\s+{_CANT}\b|no\s+can\s+do\b|"
    r"(?:that'?s|that\s+is|this\s+is|it'?s|it\s+is)\s+not\s+something\s+i\b|"
    r"(?:that|this|it)\s+(?:would\s+(?:not\s+)?be|is|isn'?t|'s)\s+(?:inappropriate|not\s+appropriate|against))",
    re.IGNORECASE)
# a refusal anywhere in the first sentence
_REFUSAL_ANY = re.compile(
    rf"\bi\s+{_CANT}\s+{_TASK_VERB}\b|\bi\s+(?:must\s+|have\s+to\s+)?(?:respectfully\s+)?(?:decline|refuse)\b|"
    r"\bas\s+an?\s+ai\b|\bas\s+a\s+language\s+model\b|\bnot\s+something\s+i\s+(?:can|will|am\s+able|'m\s+able)\b|"
    r"\bagainst\s+(?:my|the|our)\s+(?:guidelines|policy|policies|principles|usage\s+policies)\b|"
    rf"\bunable\s+to\s+{_TASK_VERB}\b|\bi'?d\s+rather\s+not\b|\bi\s+would\s+rather\s+not\b|"
    r"\bviolat\w*\s+(?:the\s+|our\s+|my\s+|openai'?s\s+)?(?:content\s+|usage\s+|safety\s+)?(?:polic|guideline|rule)",
    re.IGNORECASE)

_QUALIFIER = (r"(?:clear|obvious|common|shared|single|consistent|discernible|specific|particular|apparent|meaningful|"
              r"coherent|real|unifying|identifiable|evident|definite|strong|distinct|overarching|underlying|"
              r"recogni[sz]able|lexical|semantic|syntactic|morphological|grammatical|useful|good|single|one)")
_THING = (r"(?:pattern|theme|concept|label|category|tag|connection|relation|relationship|commonality|link|thread|trend|"
          r"grouping|meaning|similarity|feature|topic|class|answer|affix|suffix|prefix|n-?gram|common\s+ground)s?")
# a whole reply that abstains
_NONE_WHOLE = re.compile(
    r"^(?:n/?a|n\.a|none|null|nil|nothing|nope|no|-+|\?+|none\s+found|not\s+applicable|no\s+answer|"
    r"none\s+of\s+(?:the\s+above|them|these|those|the\s+(?:options|categories|above\s+options))|"
    rf"(?:there\s+is\s+)?no(?:\s+{_QUALIFIER})*\s+{_THING}(?:\s+(?:found|detected|here|identified|apparent|evident|"
    r"exists|at\s+all|shared|in\s+common))*|"
    r"unclear|unknown|uncertain|undetermined|indeterminate|ambiguous|undefined|unspecified|inconclusive|"
    r"unidentifiable|uninterpretable|not\s+interpretable|not\s+sure|unsure|no\s+idea|no\s+clue|"
    r"(?:i\s+)?(?:don'?t|do\s+not)\s+know|hard\s+to\s+(?:say|tell)|(?:can'?t|cannot|can\s+not)\s+(?:say|tell|be\s+sure)|"
    r"(?:cannot|can'?t|can\s+not)\s+(?:be\s+)?determined?|not\s+determinable|undeterminable|"
    r"impossible\s+to\s+(?:say|tell|determine)|unable\s+to\s+determine|"
    r"(?:insufficient|not\s+enough|limited)\s+(?:context|information|data|evidence)|"
    r"(?:mixed|random|miscellaneous|misc|various|assorted|unrelated|heterogeneous|diverse|disparate|eclectic)"
    r"(?:\s+(?:bag|words|terms|items|tokens|list|group|assortment|collection|set|mix|concepts|topics|categories|"
    r"nouns|things))?|"
    r"(?:a\s+)?(?:mixed\s+bag|grab\s+bag|random\s+assortment|mix\s+of\s+(?:unrelated\s+)?(?:words|things|categories))|"
    r"nothing\s+in\s+common|no\s+common\s+\w+|not\s+a\s+(?:coherent|clear|single)\s+\w+)$",
    re.IGNORECASE)
_NONE_LEAD = re.compile(r"^(?:n/?a|none|no|null|nothing|nope)(?:\s*[,.!;:(\u2013\u2014]|\s+-\s)\s*(.*)$", re.IGNORECASE)
# a sentence that says there is no label
_NONE_SENTENCE = re.compile(
    r"\b(?:there\s+(?:is|are|'s|seems\s+to\s+be|appears\s+to\s+be|doesn'?t\s+seem\s+to\s+be|does\s+not\s+seem\s+to\s+be)"
    r"\s+(?:no|not\s+(?:a|any|one))\b|there\s+(?:isn'?t|aren'?t)\s+(?:a|any|one|really)\b|"
    r"there\s+(?:doesn'?t|does\s+not|don'?t|do\s+not)\s+(?:seem|appear)\s+to\s+be\s+(?:a|an|any|one)\b|"
    r"(?:do|does|did)(?:n'?t|\s+not)\s+(?:(?:seem|appear)\s+to\s+|really\s+|clearly\s+|all\s+)?"
    r"(?:share|have|form|follow|fit|belong|exhibit|display|show|fall|constitute|relate)\b|"
    r"(?:have|has|share)\s+(?:nothing|little)\s+in\s+common|(?:are|is|seem|appear)\s+(?:to\s+be\s+)?(?:un|not\s+)related|"
    r"(?:are|is)n'?t\s+related|"
    rf"\bno\s+{_QUALIFIER}\s+{_THING}|"
    r"(?:hard|difficult|impossible|not\s+possible|tricky|tough)\s+to\s+(?:say|tell|determine|identify|find|discern|"
    r"pin\s+down|label|categori[sz]e|name|pinpoint)|"
    r"(?:cannot|can'?t|could\s+not|couldn'?t)\s+(?:be\s+)?(?:determined?|identif(?:y|ied)|labell?ed|categori[sz]ed?|"
    r"classif(?:y|ied)|find|discern|see|detect|spot)\b|"
    r"(?:too|very|quite|rather)\s+(?:diverse|varied|random|heterogeneous|mixed|disparate|broad|generic)|"
    r"(?:appear|seem)s?\s+(?:to\s+be\s+)?(?:random|unrelated|arbitrary)|"
    r"(?:not\s+enough|insufficient)\s+(?:context|information|data)|no\s+single\s+label|not\s+sure\s+(?:what|how|there)|"
    r"(?:isn'?t|is\s+not|aren'?t|are\s+not)\s+(?:a\s+|any\s+)?(?:clear|obvious|common|shared|single|discernible))",
    re.IGNORECASE)

_KEY_WORDS = (r"(?:label|answer|concept|pattern|tag|category|name|theme|title|topic|final\s+answer|output|response|"
              r"suffix|prefix|affix|ending|n-?gram|pos\s+tag|part\s+of\s+speech)")
_KEY_QUAL = r"(?:(?:concise|short|final|best|shared|suggested|proposed|common|my|possible|general|overall|concept)\s+)*"
# "Label: X", "Label — X", "The label is X", "Answer = X"
_KEYED = re.compile(rf"^\s*(?:the\s+)?{_KEY_QUAL}{_KEY_WORDS}(?:\s*[:=]\s*|\s+[-\u2013\u2014]+\s+|\s*[\u2013\u2014]\s*|"
                    r"\s+(?:is|would\s+be|could\s+be)\s*[:=]?\s*)(.*)$", re.IGNORECASE)
# a header line naming the key alone ("### Label", "**Concept**", "Label:"): the label is on the next line
_KEY_ALONE = re.compile(rf"^\s*(?:the\s+)?{_KEY_QUAL}{_KEY_WORDS}s?\s*:?\s*$", re.IGNORECASE)
_MARKDOWN = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-+*\u2022\u00b7]\s+|\d+[.)]\s+)*|\s+$")
_INTERJECTION = re.compile(
    r"^\W*(?:sure|certainly|of\s+course|absolutely|okay|ok|alright|all\s+right|yes|great|got\s+it|here\s+you\s+go|"
    r"happy\s+to\s+help|no\s+problem|understood|definitely|gladly|thanks?|thank\s+you)(?:\s+thing)?\W*$",
    re.IGNORECASE)
_PREAMBLE = re.compile(
    r"^\W*(?:sure|certainly|of\s+course|absolutely|okay|ok|alright|yes|great|here(?:'s|\s+is|\s+are)|based\s+on|"
    r"looking\s+at|after\s+(?:reviewing|analy[sz]ing|looking)|analy[sz]ing|considering|given)\b",
    re.IGNORECASE)
_THINK = re.compile(r"<(think|thinking|reasoning|reflection)>.*?</\1>", re.IGNORECASE | re.DOTALL)
_OPEN_THINK = re.compile(r"<(think|thinking|reasoning|reflection)>", re.IGNORECASE)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)\n?```", re.DOTALL)
_JSON_KEYS = ("label", "answer", "concept", "name", "tag", "pattern", "category", "title", "concept_label",
              "concept_name", "shared_pattern", "pos", "pos_tag")
_LABEL_WORD_COLON = re.compile(r"\b(?:label|answer|tag|pattern|category|name|concept|theme)\b[^:.]{0,40}:\s*(.+)$",
                               re.IGNORECASE)
_QUOTED = re.compile(r'"([^"]+)"|\u201c([^\u201d]+)\u201d|\*\*([^*]+)\*\*|(?:^|(?<=\s))\'([^\']+)\'(?=$|[\s.,;:!?)])')
_SAYS = re.compile(r"\b(?:is|are|was|were|be|call|called|label|labell?ed|name|named|describe|described|suggest|would|"
                   r"could|might|fits?|go\s+with)\b", re.IGNORECASE)
_HEDGE = re.compile(
    r"^(?:(?:i'?m|i\s+am)\s+not\s+(?:entirely\s+|completely\s+|totally\s+|100%\s+)?(?:sure|certain)|"
    r"not\s+(?:entirely\s+|completely\s+)?sure|hard\s+to\s+say|it'?s\s+hard\s+to\s+say|difficult\s+to\s+say|"
    r"tough\s+(?:one|call))\s*[,;:.!\u2013\u2014-]*\s*(?:but\s+)?(?P<x>.+)$|"
    r"^(?:perhaps|maybe|possibly|probably|likely|most\s+likely|my\s+best\s+guess(?:\s+(?:is|would\s+be))?|best\s+guess|"
    r"my\s+guess(?:\s+(?:is|would\s+be))?|i\s+guess|i\s+think|i\s+believe|i'?d\s+(?:say|guess|go\s+with)|"
    r"i\s+would\s+(?:say|guess|go\s+with)|i'?ll\s+go\s+with|going\s+with|tentatively|roughly)\b\s*[,:\u2013\u2014-]?\s*"
    r"(?:it'?s|it\s+is|they'?re|they\s+are|these\s+are|this\s+is|something\s+like|"
    r"something\s+along\s+the\s+lines\s+of)?\s*(?P<y>.+)$",
    re.IGNORECASE)
_LEAD_INS = [re.compile(p, re.IGNORECASE) for p in (
    # "I would call this group 'X'", "I'd label these as X", "One could name them X"
    r"^(?:i\s+would|i'?d|i\s+will|i'?ll|i\s+can|i\s+might|we\s+(?:could|can|would|might)|one\s+(?:could|might|would|can)|"
    r"you\s+(?:could|might|can))\s+(?:probably\s+|likely\s+|perhaps\s+|simply\s+|best\s+)?(?:call|label|name|describe|"
    r"term|tag|title|categori[sz]e|classify|characteri[sz]e|summari[sz]e|group|sum\s+up)\s+"
    r"(?:(?:this|these|it|them|the|this)\s*)?(?:(?:list|group|set|cluster|words|collection)\s*)?(?:of\s+words\s*)?"
    r"(?:up\s+)?(?:as|with|under|by)?\s*[:\u2013\u2014-]?\s*(?P<x>.+)$",
    # "The common theme is X", "A suitable label would be X"
    r"^(?:the\s+|a\s+|one\s+)?(?:(?:common|shared|unifying|underlying|main|overall|central|best|obvious|clear|"
    r"likely|key|dominant|general|suitable|appropriate|good|possible|concise|short|fitting|connecting)\s+)*"
    r"(?:theme|concept|pattern|category|label|connection|link|thread|feature|element|topic|name|tag|answer|grouping|"
    r"idea|trait|property|commonality|class|type|description|denominator|suffix|prefix|ending|affix|n-?gram|"
    r"morpheme|tag|part\s+of\s+speech)\s+(?:here\s+|among\s+(?:them|these\s+words)\s+|"
    r"for\s+(?:these|this|the)\s+(?:words|list|group)\s+|(?:that\s+)?(?:links|connects|unites|ties|describes|fits)\s+"
    r"(?:them|these\s+words|this\s+list|the\s+words)(?:\s+together)?\s+)?(?:is|would\s+be|seems\s+to\s+be|"
    r"appears\s+to\s+be|could\s+be|might\s+be|may\s+be|can\s+be|is\s+probably|is\s+likely)\s*[:\u2013\u2014-]?\s*(?P<x>.+)$",
    # "These words are all X", "They all refer to X", "All of these are X"
    r"^(?:these|the|all(?:\s+of)?(?:\s+(?:these|the|them))?|they|each\s+of\s+these|the\s+listed)\s*(?:words|terms|items|"
    r"tokens|entries)?\s+(?:are\s+all|all\s+are|all\s+seem\s+to\s+be|all\s+appear\s+to\s+be|"
    r"(?:all\s+)?(?:refer\s+to|denote|describe|name|represent|express|relate\s+to|share|have|"
    r"belong\s+to|fall\s+under|fit\s+(?:into|under)))\s+(?:the\s+category\s+(?:of\s+)?|examples\s+of\s+|instances\s+of\s+|"
    r"related\s+to\s+|associated\s+with\s+|connected\s+to\s+|the\s+common\s+|a\s+common\s+)?(?P<x>.+)$",
    # "This is a list of X", "This group is X"
    r"^(?:this|it)\s+(?:(?:list|group|set|cluster)\s+)?(?:is|'s|seems\s+to\s+be|appears\s+to\s+be|looks\s+like)\s+"
    r"(?:(?:a|an)\s+(?:list|group|set|collection|cluster)\s+of\s+)(?P<x>.+)$",
    # lexical prompt: "Yes, the suffix -ing", "Yes: -ing"
    r"^yes\b\s*[,:.!\u2013\u2014-]*\s*(?:(?:they|the\s+words)\s+(?:all\s+)?(?:do|share\s+one|share\s+a\s+pattern)\s*"
    r"[,:.!\u2013\u2014-]*\s*)?(?P<x>.+)$",
)]
_TRAILER = re.compile(r"(?:,\s*(?:as|since|because|which|where|e\.g\.|i\.e\.|for\s+example|such\s+as|like)\b|"
                      r"\s+(?:because|since|as\s+(?:they|these|all|each|every)|given\s+that)\b|"
                      r"\s+[-\u2013\u2014]+\s+|\s*[\u2013\u2014]\s*|(?<=[a-z)\]])[.!;]\s+(?=\S)).*$", re.IGNORECASE)
_PRONOUNS = {"i'm", "i'd", "i'll", "i've", "me", "my", "mine", "myself", "we", "we're", "we'd", "us", "our", "you",
             "you're", "your", "yours", "let's"}
_VERBS = {"am", "are", "is", "was", "were", "be", "have", "has", "had", "do", "does", "did", "can", "could", "would",
          "should", "will", "shall", "may", "might", "must", "think", "believe", "see", "notice", "need", "want",
          "suggest", "guess", "feel", "cannot", "can't", "don't", "won't", "wouldn't", "label", "call", "name",
          "recommend", "found", "find", "observe", "note", "say", "'d", "'ll", "'m", "'ve", "get", "go", "know",
          "mean", "look", "try", "prefer", "apologize", "apologise", "refuse", "decline"}
_SENTENCE_START = re.compile(
    r"^(?:(?:these|those|the|all|both|each|every|most|many|some)\s+(?:of\s+(?:these|the|them)\s+)?(?:words|terms|items|"
    r"tokens|entries|examples|list)\s+(?:are|is|all|seem|appear|have|share|refer|represent|describe|denote|can|could|"
    r"would|include|consist|belong|do|don't|look)|(?:they|it|this|that|there|here)\s+(?:are|is|'s|'re|all|seem|seems|"
    r"appear|appears|could|might|may|would|do|does|look|looks)\b|(?:let|please|note|hmm|well)\b)",
    re.IGNORECASE)

_VAGUE_START = re.compile(r"^(?:mostly|mainly|primarily|largely|generally|probably|somewhat|kind\s+of|sort\s+of|about|"
                          r"related\s+to|all\s+about|something\s+to\s+do\s+with)(?![-\w])", re.IGNORECASE)


def normalise(text: str) -> str:
    """Typographic apostrophes as ', no-break spaces as spaces (one character for one, so a label
    found in the normalised reply maps back onto the reply), zero-width characters removed."""
    return _INVISIBLE.sub("", text or "").translate(_NORMAL)


def _as_written(label: str, original: str) -> str:
    """`label` (found in the normalised reply) in the reply's own characters (’ stays ’)."""
    written = _INVISIBLE.sub("", original or "")
    i = written.translate(_NORMAL).find(label)
    return written[i:i + len(label)] if i >= 0 else label


def strip_reasoning(text: str) -> str | None:
    """The reply without reasoning blocks (`<think>...</think>` and the like); None when the
    reply is reasoning only (an unterminated block: the answer was never reached)."""
    text = _THINK.sub("", text or "")
    m = _OPEN_THINK.search(text)
    if m:
        text = text[:m.start()]
        return text if text.strip() else None
    return text


def is_refusal(text: str) -> bool:
    """Whether the reply (or a candidate label) declines the task."""
    t = normalise(text).strip().lstrip("*_#>`\"' ").strip()
    first = re.sub(r"\([^)]*\)", " ", re.split(r"(?<=[.!?])\s|\n", t, maxsplit=1)[0])  # not what a label quotes
    if re.match(r"^\W*(?:sorry|unfortunately|regrettably)\s*[,.!:;\u2013\u2014-]\s*(.+)$", t, re.IGNORECASE):
        rest = re.split(r"[,.!:;\u2013\u2014-]\s*", t, maxsplit=1)[1]
        if is_abstention(rest):  # "Sorry, there's no clear pattern here." abstains
            return False
    return bool(_REFUSAL_START.match(t) or _REFUSAL_ANY.search(first))


def is_abstention(text: str) -> bool:
    """Whether the text says no label applies: a short abstention ("None of the above",
    "Unclear") or a sentence saying the words share nothing."""
    t = _clean(normalise(text)).strip().lower()
    if not t:
        return False
    lead = _NONE_LEAD.match(t)  # "No, they don't", "NA - they have different tags", "None; the tags vary"
    if lead:
        return not (lead.group(1) and is_refusal(lead.group(1)))
    return bool(_NONE_WHOLE.match(t) or _NONE_SENTENCE.search(t))


def _clean(line: str) -> str:
    """One label line without markdown, quotes, a trailing period."""
    line = _MARKDOWN.sub("", line.strip()).strip()
    for _ in range(3):
        line = re.sub(r"^(\*\*|__|\*|_)(.+?)\1$", r"\2", line).strip()
        line = re.sub(r"^\*\*(.+)\*\*([.!]?)$", r"\1", line).strip()
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'`":
            line = line[1:-1].strip()
        if len(line) >= 2 and line[0] in "\u201c\u2018\u00ab" and line[-1] in "\u201d\u2019\u00bb":
            line = line[1:-1].strip()
    line = line.rstrip(".!").strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'`":
        line = line[1:-1].strip()
    return line


def _unkey(text: str) -> str:
    """A label without a leading key ("Concept: Animals" -> "Animals")."""
    m = _KEYED.match(_MARKDOWN.sub("", text.replace("**", "").replace("__", "")))
    return _clean(m.group(1)) if m and _clean(m.group(1)) else text


def json_value(text: str):
    """The JSON value in a reply: the whole reply, a ``` fence, or the first {...} / [...] in it."""
    body = text.strip()
    candidates = [body] + [m.group(1) for m in _FENCE.finditer(body)]
    for opener, closer in (("{", "}"), ("[", "]")):
        i, j = body.find(opener), body.rfind(closer)
        if 0 <= i < j:
            candidates.append(body[i:j + 1])
    for c in candidates:
        try:
            return json.loads(c)
        except ValueError:
            continue
    return None


_MISSING = object()


def _json_label(obj):
    """(label or None or _MISSING, the object's fields): a label-like key's value (None when
    the key holds null: an explicit abstention), a string, or a one-element list."""
    if isinstance(obj, str):
        return obj, {}
    if isinstance(obj, list) and len(obj) == 1 and isinstance(obj[0], (str, dict)):
        return _json_label(obj[0])
    if isinstance(obj, dict):
        lower = {str(k).lower().strip(): v for k, v in obj.items()}
        for key in _JSON_KEYS:
            if key in lower and (isinstance(lower[key], str) or lower[key] is None):
                return lower[key], lower
    return _MISSING, {}


def _first_sentence(line: str) -> str:
    return re.split(r"(?<=[a-z)\]'\"])[.!?]\s+(?=[A-Z])", line, maxsplit=1)[0]


def _from_line(line: str) -> str:
    """The label a line holds: after a key, inside a quote or a sentence around it, or the line itself."""
    line = normalise(line).strip()
    keyed = _KEYED.match(line)
    if keyed and _clean(keyed.group(1)):
        return _clean(keyed.group(1))
    sentence = _first_sentence(line)
    for _ in range(2):  # a hedge around a lead-in: "Maybe: I would call it X"
        hedge = _HEDGE.match(sentence)
        if hedge:
            sentence = (hedge.group("x") or hedge.group("y")).strip()
    keyed = _LABEL_WORD_COLON.search(sentence)
    if keyed and _clean(keyed.group(1)):
        return _clean(keyed.group(1))
    if (len(sentence.split()) > 3 and _SAYS.search(sentence)) or _SENTENCE_START.match(sentence):
        quoted = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(sentence)]
        quoted = [q for q in quoted if _clean(q)]
        if len(quoted) == 1:
            return _clean(quoted[0])
    for lead in _LEAD_INS:
        m = lead.match(sentence)
        if m and _clean(m.group("x")):
            rest = _TRAILER.sub("", m.group("x")).strip()
            return _clean(rest or m.group("x"))
    return _clean(sentence if (sentence != line.strip() or hedge) else line)


_SAID_LABEL = re.compile(r"\b(?:label|answer|category|name|concept|theme|pattern|tag)\b(?:\s+(?:would|could|should|might|"
                         r"may|will)\s+be|\s+is|\s+here\s+is)?\s*:\s*(.+)$", re.IGNORECASE)


def _candidate(body: str, max_words: int = 8) -> tuple[str | None, str]:
    """(the label a reply holds, how it was found: json | keyed | line | abstain | none-json | nothing)."""
    body = body.strip()
    if body.startswith(("{", "[", "```")) or _FENCE.search(body):
        obj = json_value(body)
        if obj is not None:
            label, _ = _json_label(obj)
            if label is None:
                return None, "none-json"
            if label is _MISSING:
                return None, "nothing"
            return _unkey(_clean(label)), "json"
        fences = [m.group(1) for m in _FENCE.finditer(body)]
        if fences:
            body = "\n".join(fences)
        body = body.replace("```", "")
    lines = [ln for ln in (_MARKDOWN.sub("", normalise(x)).strip() for x in body.splitlines()) if ln]
    plain = [_clean(ln.replace("**", "").replace("__", "")) for ln in lines]
    for i, line in enumerate(plain):  # an explicit key anywhere wins
        nxt = _unkey(plain[i + 1]) if i + 1 < len(plain) else None
        if _KEY_ALONE.match(line):
            return (nxt, "keyed") if nxt else (None, "nothing")  # "### Label" then the label, or nothing
        keyed = _KEYED.match(line)
        if keyed and i == 0 or keyed and not _SENTENCE_START.match(line) and len(line.split()) <= 12:
            rest = _clean(keyed.group(1))
            if rest:
                return rest, "keyed"
            return (nxt, "keyed") if nxt else (None, "nothing")
        said = _SAID_LABEL.search(line)  # "... So the label would be: Domestic pets. I hope this helps!"
        if said and _clean(_first_sentence(said.group(1))):
            return _clean(_first_sentence(said.group(1))), "keyed"
    first: tuple[str | None, str] | None = None
    for i, line in enumerate(plain):
        if not line or _INTERJECTION.match(line):
            continue
        if lines[i].rstrip().endswith(":") and i + 1 < len(plain):  # "Here is the label:" then the label
            head = re.split(r":\s*", line, maxsplit=1)
            if len(head) == 2 and head[1].strip():
                return _clean(head[1]), "line"
            continue
        if _PREAMBLE.match(line) and ":" in line:
            after = re.split(r":\s*", line, maxsplit=1)[1]
            if _clean(after):
                return _clean(after), "line"
        if _PREAMBLE.match(line) and len(line.split()) <= 3 and i + 1 < len(plain):
            continue
        if is_abstention(_first_sentence(line)) and not _KEYED.match(line):
            return (None, "abstain") if first is None else first
        label = _from_line(line.replace("**", "") if line.count("**") != 2 else line)
        if first is None:
            first = (label, "line")
            if label and not shape_problem(label, max_words):
                return first
        elif label and len(line.split()) <= max_words and not shape_problem(label, max_words):
            return label, "line"  # an explanation first, then the label on a line of its own
    return first or (None, "nothing")


def shape_problem(label: str, max_words: int) -> str | None:
    """Why `label` is not a label (None when it is one): too long, first or second person, a
    sentence about the words, a question."""
    if not re.search(r"\w", label):
        return "no word"
    outside = re.sub(r"\([^)]*\)|\[[^\]]*\]|\"[^\"]*\"|\u201c[^\u201d]*\u201d", " ", label)
    words = outside.split()
    if len(words) > max_words or len(label.split()) > 2 * max_words:
        return "too long"
    lowered = [w.strip(".,;:!?\"'*").lower() for w in words]
    for j, w in enumerate(lowered):  # a speaker, not a mention: "I think ...", "You can ...", not "words like you"
        if w in _PRONOUNS or w == "i" and (j == 0 or not words[j - 1][:1].isupper()):
            if j == 0 and w not in ("me", "us", "mine", "yours") or j + 1 < len(lowered) and lowered[j + 1] in _VERBS:
                return "first or second person"
    if re.match(r"^(?:what|which|how|why|who|where|when|is|are|do|does|did|can|could|would|should|shall|may)\b.*\w\W*\?\s*$",
                label, re.IGNORECASE):
        return "a question"
    if _VAGUE_START.match(label):
        return "not a noun phrase"
    if _SENTENCE_START.match(outside.strip()):
        return "a sentence about the words"
    if re.search(r"[a-z]{2,}[.!]\s+[A-Z]", outside):
        return "more than one sentence"
    return None


def parse_label(text: str, finish_reason: str | None, max_label_words: int = 8) -> Parsed:
    """A free-text label (the default and context prompts)."""
    early, body = screen(text, finish_reason)
    if early:
        return early
    parsed = _judge(*_candidate(body, max_label_words), max_label_words)
    if parsed.label:
        parsed.label = _as_written(parsed.label, text)
    return parsed


def _judge(label: str | None, how: str, max_label_words: int) -> Parsed:
    if how in ("abstain", "none-json"):
        return Parsed("none")
    if not label or not re.search(r"\w", label):
        return Parsed("unparseable")
    label = _clean(_unkey(label))
    if is_refusal(label):
        return Parsed("refused")
    if is_abstention(label):
        return Parsed("none")
    if shape_problem(label, max_label_words):
        return Parsed("unparseable")
    return Parsed("ok", label)


def screen(text: str, finish_reason: str | None) -> tuple[Parsed | None, str]:
    """The statuses every prompt shares (filtered, truncated, refused, empty) and the reply
    without reasoning blocks."""
    if finish_reason == "content_filter":
        return Parsed("filtered"), ""
    if finish_reason == "refusal":
        return Parsed("refused"), ""
    if finish_reason == "length":
        return Parsed("truncated"), ""
    body = strip_reasoning(normalise(text))
    if body is None or not body.strip() or not body.replace("`", "").strip() or re.fullmatch(r"\s*```\w*\s*", body):
        return Parsed("unparseable"), ""
    if (is_refusal(body) and not body.lstrip().startswith(("{", "["))  # JSON: judged on its label
            and not _NONE_WHOLE.match(_clean(body).lower())):  # "Cannot determine" abstains
        return Parsed("refused"), ""
    return None, body


def parse_na(text: str, finish_reason: str | None, check: Callable[[str], str | None] = lambda s: s) -> Parsed:
    """A label or NA (the lexical and pos prompts); `check` turns the label into its normal
    form, or None when it is not one."""
    parsed = parse_label(text, finish_reason, max_label_words=6)
    if parsed.status != "ok":
        return parsed
    normal = check(parsed.label)
    return Parsed("ok", normal) if normal else Parsed("unparseable")


def penn_tag(label: str) -> str | None:
    """The Penn Treebank tag in a reply's label, upper-cased ("nns" -> "NNS", "NNS (plural
    nouns)" -> "NNS"); None when there is no single tag."""
    whole = label.strip().upper()
    if whole in PENN_TAGS:
        return whole
    found = {t.upper() for t in re.findall(r"[A-Za-z$]+", label) if t.upper() in PENN_TAGS and (t.isupper() or t == label)}
    return found.pop() if len(found) == 1 else None


def parse_structured(text: str, finish_reason: str | None, max_label_words: int = 8) -> Parsed:
    """The structured prompt: a JSON object with a label (null to abstain), a description and a
    concept type."""
    early, body = screen(text, finish_reason)
    if early:
        return early
    obj = json_value(body)
    label, fields = _json_label(obj) if obj is not None else (_MISSING, {})
    if label is _MISSING or not fields:
        return Parsed("unparseable")
    ctype = fields.get("type", fields.get("concept_type"))
    if ctype is not None and (not isinstance(ctype, str) or ctype.strip().lower() not in CONCEPT_TYPES):
        return Parsed("unparseable")
    if label is None:
        return Parsed("none")
    parsed = _judge(_unkey(_clean(label)), "json", max_label_words)
    if parsed.status != "ok":
        return parsed
    desc = fields.get("description")
    return Parsed("ok", _as_written(parsed.label, label), desc.strip() if isinstance(desc, str) else None,
                  ctype.strip().lower() if ctype else None)


def parse_detection(text: str, finish_reason: str | None, n_words: int) -> tuple[str, list[int] | None]:
    """(status, chosen 0-based indices) of a label-scoring reply. Accepted shapes: a JSON list
    of numbers (bare, fenced or after a preamble), an object holding one such list (as JSON
    mode returns, e.g. {"fit": [1, 3]}), numbers as strings, or a plain "1, 3" / "none".
    Anything else, or a number outside 1..n_words, is unparseable."""
    early, body = screen(text, finish_reason)
    if early:
        return early.status, None
    obj = json_value(body)
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        obj = lists[0] if len(lists) == 1 else None
    if obj is None:
        plain = body.strip().rstrip(".").strip()
        if plain.lower() in ("none", "[]", "no words", "none of them"):
            return "ok", []
        if not re.fullmatch(r"\d+(\s*(,|;|and|\s)\s*\d+)*", plain):
            return "unparseable", None
        obj = [int(x) for x in re.findall(r"\d+", plain)]
    if not isinstance(obj, list):
        return "unparseable", None
    out = []
    for x in obj:
        if isinstance(x, str) and x.strip().isdigit():
            x = int(x.strip())
        if not isinstance(x, int) or isinstance(x, bool) or not 1 <= x <= n_words:
            return "unparseable", None
        out.append(x - 1)
    return "ok", sorted(set(out))
