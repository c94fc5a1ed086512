"""The tag sets that read the token table alone: gold columns, features, suffix, casing, numbers,
first word."""

from __future__ import annotations

import re

import pandas as pd

from concepts.discovery.tagsets.registry import TagFn, tag_set


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
