"""WordNet supersenses (noun.person, verb.motion, ...) as a tag set, from Debian's
`wordnet-base` database read with NLTK's WordNet reader.

Debian ships the database (`/usr/share/wordnet`) but not the `lexnames` file NLTK needs; it is
rebuilt from the man page `lexnames.5WN` (the 45 lexicographer file names) into a cache folder
beside copies of the database files. A token's tag is the supersense of the most frequent sense
of its lemma (or lower-cased word) for its part of speech (from UPOS when the corpus has it;
nouns and verbs only). Where WordNet or NLTK is missing the tag set is skipped with a message.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
from functools import cache, lru_cache
from pathlib import Path

import pandas as pd

from concepts.discovery.tagsets.registry import tag_set

log = logging.getLogger(__name__)

WORDNET_DIR = Path(os.environ.get("WORDNET_DIR", "/usr/share/wordnet"))
MAN_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")
CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
UPOS_TO_WN = {"NOUN": "n", "PROPN": None, "VERB": "v"}


def _lexnames() -> list[str] | None:
    if not MAN_PAGE.exists():
        return None
    text = gzip.decompress(MAN_PAGE.read_bytes()).decode("utf-8", "replace")
    found = dict(re.findall(r"^(\d\d)\t\s*([a-z]+\.[A-Za-z]+)", text, flags=re.M))
    names = [found.get(f"{i:02d}") for i in range(len(found))]
    return names if names and all(names) else None


def wordnet_problem() -> str | None:
    """Why the wordnet tag set cannot run here (one sentence with the fix), or None."""
    try:
        import nltk  # noqa: F401
    except ImportError:
        return "NLTK is not installed (pip install nltk)"
    if not (WORDNET_DIR / "data.noun").exists():
        return f"no WordNet database at {WORDNET_DIR} (apt-get install wordnet-base)"
    if not MAN_PAGE.exists():
        return f"the lexnames man page {MAN_PAGE} is missing (apt-get install wordnet-base)"
    return None


@lru_cache(maxsize=1)
def wordnet_reader():
    """NLTK's reader over the system WordNet, or None where `wordnet_problem()` says why not."""
    if wordnet_problem() is not None:
        return None
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    names = _lexnames()
    if names is None:
        return None
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "latent-concepts" / "wordnet"
    root.mkdir(parents=True, exist_ok=True)
    for f in WORDNET_DIR.iterdir():  # copies, not links: NLTK refuses paths that resolve elsewhere
        dst = root / f.name
        if dst.is_symlink():
            dst.unlink()
        if f.is_file() and (not dst.exists() or dst.stat().st_size != f.stat().st_size):
            shutil.copyfile(f, dst)
    lex = "".join(f"{i:02d}\t{n}\t{CATEGORY[n.split('.')[0]]}\n" for i, n in enumerate(names))
    if not (root / "lexnames").exists() or (root / "lexnames").read_text() != lex:
        (root / "lexnames").write_text(lex)
    import nltk

    if str(root) not in nltk.data.path:  # NLTK reads only below its data paths
        nltk.data.path.append(str(root))
    class _Reader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):  # no mapping to NLTK's downloadable WordNet (absent here)
            return None

    import warnings

    with warnings.catch_warnings():  # "multilingual functions are not available": not needed here
        warnings.simplefilter("ignore", UserWarning)
        return _Reader(str(root), None)


def wordnet_identity() -> dict | None:
    """What the wordnet tag set reads, for the concepts folder's identity: None when it cannot run
    (no NLTK, no database, no lexnames page), else the database files' names and sizes."""
    if wordnet_problem() is not None:
        return None
    return {f.name: f.stat().st_size for f in sorted(WORDNET_DIR.iterdir()) if f.is_file()}


@tag_set("wordnet", resource=wordnet_identity)
def wordnet_supersense(tokens: pd.DataFrame):
    wn = wordnet_reader()
    if wn is None:
        return wordnet_problem() or f"the lexnames man page {MAN_PAGE} lists no supersenses"
    lemmas = tokens["lemma"] if "lemma" in tokens.columns else tokens["word"]
    upos = tokens["upos"] if "upos" in tokens.columns else None

    @cache
    def sense(lemma: str, pos: str | None) -> tuple[str, ...]:
        synsets = wn.synsets(lemma.lower(), pos=pos) if pos else wn.synsets(lemma.lower())
        synsets = [s for s in synsets if s.pos() in ("n", "v")]
        return (synsets[0].lexname(),) if synsets else ()

    out = []
    for i, lemma in enumerate(lemmas.astype(str)):
        if upos is not None:
            pos = UPOS_TO_WN.get(str(upos.iloc[i]), "skip")
            out.append(() if pos in ("skip", None) else sense(lemma, pos))
        else:
            out.append(sense(lemma, None))
    return out
