"""Corpus readers: CoNLL-U, plain text, tables and Hugging Face datasets."""

from concepts.corpus.loading import Corpus, load_corpus
from concepts.corpus.sentence import Sentence

__all__ = ["Corpus", "Sentence", "load_corpus"]
