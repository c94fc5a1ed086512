"""Human-defined tag sets for alignment, one small registered function each.

A tag set function takes the token table (rows = tokens to tag) and returns, per row, a tuple
of tags (usually one; morphological features give several; an empty tuple means untagged, so
a binary property tags only its positive side), None when the table lacks the column it needs, or
a string saying why it cannot run on this machine (a missing resource, with the fix); either way
it is skipped with one line saying why. Add one with:

    @tag_set("my_tags")
    def my_tags(tokens):
        return [("long",) if len(w) > 8 else ("short",) for w in tokens["word"]]
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pandas as pd

log = logging.getLogger(__name__)

TagFn = Callable[[pd.DataFrame], "list[tuple[str, ...]] | str | None"]
TAG_SETS: dict[str, TagFn] = {}
# tag sets that read a resource outside the corpus: name -> a function giving the resource's
# identity (None when it is missing), so that installing or removing it names new concepts folders
TAG_SET_RESOURCES: dict[str, Callable[[], object]] = {}


def tag_set(name: str, resource: Callable[[], object] | None = None):
    def deco(fn: TagFn) -> TagFn:
        TAG_SETS[name] = fn
        if resource is not None:
            TAG_SET_RESOURCES[name] = resource
        return fn
    return deco


def resource_identity(names: list[str]) -> dict[str, object]:
    """The identity of the outside resources the named tag sets read ({} when none reads one):
    whether each is installed, and which version (e.g. WordNet's files)."""
    return {n: TAG_SET_RESOURCES[n]() for n in names if n in TAG_SET_RESOURCES}


def _column(name: str) -> TagFn:
    def fn(tokens: pd.DataFrame):
        if name not in tokens.columns:
            return None
        return [(v,) if v not in ("", "_") else () for v in tokens[name].astype(str)]
    return fn


for _col in ("upos", "xpos", "deprel"):
    tag_set(_col)(_column(_col))


@tag_set("feats")
def feats(tokens: pd.DataFrame):
    if "feats" not in tokens.columns:
        return None
    return [tuple(f for f in str(v).split("|") if f and f != "_") for v in tokens["feats"]]


SUFFIXES = ("ing", "ed", "ly", "tion", "sion", "ness", "ment", "able", "ible", "er", "est", "ity", "ous", "ive", "ful", "less", "al", "s")


@tag_set("suffix")
def suffix(tokens: pd.DataFrame):
    out = []
    for w in tokens["word"].astype(str):
        lw = w.lower()
        hit = next((s for s in SUFFIXES if lw.endswith(s) and len(lw) > len(s) + 2), None)
        out.append((f"-{hit}",) if hit else ())
    return out


@tag_set("casing")
def casing(tokens: pd.DataFrame):
    def kind(w: str) -> str:
        if not any(c.isalpha() for c in w):
            return "no_letters"
        if w.isupper() and len(w) > 1:
            return "UPPER"
        if w[0].isupper() and (len(w) == 1 or w[1:].islower()):
            return "Title"
        if w.islower():
            return "lower"
        return "Mixed"
    return [(kind(w),) for w in tokens["word"].astype(str)]


_NUMBER = re.compile(r"^[+-]?(\d+([.,:/]\d+)*|\d*[.,]\d+)(st|nd|rd|th|s)?$")


@tag_set("is_number")
def is_number(tokens: pd.DataFrame):
    return [("number",) if _NUMBER.match(w) else () for w in tokens["word"].astype(str)]


@tag_set("first_word")
def first_word(tokens: pd.DataFrame):
    return [("first",) if p == 0 else () for p in tokens["position"]]


def compute_tag_sets(tokens: pd.DataFrame, names: list[str]) -> dict[str, list[tuple[str, ...]]]:
    """Run the named tag sets; those the table cannot support are skipped with a message."""
    out = {}
    for name in names:
        if name not in TAG_SETS:
            from concepts.errors import UserError

            raise UserError(f"unknown tag set {name!r} (discovery.tag_sets); known: {', '.join(sorted(TAG_SETS))}")
        tags = TAG_SETS[name](tokens)
        if tags is None or isinstance(tags, str):  # a str says why the tag set cannot run here
            log.info("tag set %s skipped: %s", name, tags or "the corpus has no such column")
            continue
        out[name] = tags
    return out


import concepts.wordnet_supersenses  # noqa: E402,F401  (registers the "wordnet" tag set)
