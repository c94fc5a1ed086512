import json

import pytest
from conftest import EWT, PACKAGED_EWT, SHARED_EWT, conllu_block

from concepts.core.errors import UserError
from concepts.corpus import load_corpus
from concepts.corpus.config import CorpusConfig
from concepts.corpus.conllu import ConlluStats, read_conllu
from concepts.corpus.plain_text import read_plain_text
from concepts.corpus.tabular import read_table

needs_ewt = pytest.mark.skipif(not EWT.exists(), reason=f"UD English EWT not found at {EWT}")


@needs_ewt
def test_ewt_counts_and_gold_columns():
    stats = ConlluStats()
    sents = []
    for split in ("train", "dev", "test"):
        (f,) = EWT.glob(f"en_ewt-ud-{split}.conllu*")  # plain or xz
        sents += list(read_conllu(f, split, stats=stats))
    assert len(sents) == 16622  # the documented size of UD English EWT
    first = sents[0]
    assert first.words[:3] == ["Al", "-", "Zaman"]
    assert first.tags["upos"][:3] == ["PROPN", "PUNCT", "PROPN"]
    assert first.tags["xpos"][5] == "NNS" and first.tags["lemma"][5] == "force"
    assert first.tags["deprel"][0] == "root" and first.tags["head"][0] == "0"
    assert set(first.tags) == {"lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc"}
    assert stats.multiword_tokens > 0 and stats.empty_nodes > 0
    for s in sents:
        assert all(len(v) == len(s.words) for v in s.tags.values())


def _mwt_file(tmp_path):
    text = (
        "# sent_id = a\n"
        "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "1\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_\n"
        "2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_\n"
        "3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_\n"
        "3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t3:conj\t_\n"
        "\n"
    )
    p = tmp_path / "x-train.conllu"
    p.write_text(text)
    return p


def test_multiword_tokens_and_empty_nodes(tmp_path):
    p = _mwt_file(tmp_path)
    stats = ConlluStats()
    (words,) = list(read_conllu(p, stats=stats))
    assert words.words == ["do", "n't", "go"]
    assert words.tags["upos"] == ["AUX", "PART", "VERB"]
    assert stats.multiword_tokens == 1 and stats.empty_nodes == 1
    (surface,) = list(read_conllu(p, multiword="surface"))
    assert surface.words == ["don't", "go"]
    assert surface.tags["upos"] == ["AUX+PART", "VERB"]
    assert surface.tags["xpos"] == ["VBP+RB", "VB"]


@pytest.mark.parametrize(
    "line, why",
    [
        ("1\tdo\tdo\tAUX\n", "expected 10 tab-separated columns, found 4"),
        ("x\tdo\tdo\tAUX\tVBP\t_\t0\troot\t_\t_\n", "ID column 'x'"),
        ("2\tdo\tdo\tAUX\tVBP\t_\t0\troot\t_\t_\n", "word ids must run 1..n"),
    ],
)
def test_malformed_conllu_names_file_and_line(tmp_path, line, why):
    p = tmp_path / "bad.conllu"
    p.write_text(conllu_block(["Fine", "."], ["ADJ", "PUNCT"], "ok") + "# sent_id = bad\n" + line + "\n")
    with pytest.raises(UserError) as e:
        list(read_conllu(p))
    assert f"{p}:7" in str(e.value) and why in str(e.value)


def test_plain_text_tokenizers(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("Hello, world! It's 3.14.\n\n  second   line \n")
    ws = list(read_plain_text(p, "whitespace"))
    assert [s.words for s in ws] == [["Hello,", "world!", "It's", "3.14."], ["second", "line"]]
    rx = list(read_plain_text(p, "regex"))
    assert rx[0].words == ["Hello", ",", "world", "!", "It's", "3", ".", "14", "."]
    assert rx[1].source == "t.txt:3"
    with pytest.raises(UserError, match="corpus.tokenizer"):
        list(read_plain_text(p, "spacy"))


def test_jsonl_table_and_length_errors(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [{"tokens": ["a", "b"], "pos": ["X", "Y"]}, {"tokens": ["c"], "pos": ["Z"]}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    sents = list(read_table(str(p), "tokens", ["pos"]))
    assert [s.words for s in sents] == [["a", "b"], ["c"]] and sents[0].tags["pos"] == ["X", "Y"]
    p.write_text(json.dumps({"tokens": ["a", "b"], "pos": ["X"]}) + "\n")
    with pytest.raises(UserError, match="has 1 values for 2 tokens"):
        list(read_table(str(p), "tokens", ["pos"]))
    with pytest.raises(UserError, match="no column 'words'"):
        list(read_table(str(p), "words", []))


def test_hf_dataset_on_disk_maps_class_labels(tmp_path):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "tags": datasets.Sequence(datasets.ClassLabel(names=["NOUN", "VERB"])),
    })
    ds = datasets.Dataset.from_dict({"tokens": [["dogs", "bark"]], "tags": [[0, 1]]}, features=feats)
    ds.save_to_disk(str(tmp_path / "ds"))
    cfg = CorpusConfig(name="d", format="table", path=str(tmp_path / "ds"), splits=["train"], tag_columns=["tags"])
    corpus = load_corpus(cfg)
    assert corpus.sentences[0].words == ["dogs", "bark"]
    assert corpus.sentences[0].tags["tags"] == ["NOUN", "VERB"]


def test_length_filter_counts_and_seeded_subset(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("\n".join(" ".join(["w"] * n) for n in range(1, 21)) + "\n")
    cfg = CorpusConfig(name="c", format="text", path=str(p), splits=[], max_sentence_length=10)
    c = load_corpus(cfg)
    assert c.stats["sentences_skipped_word_limit"] == 10 and len(c.sentences) == 10
    assert max(len(s) for s in c.sentences) == 10  # skipped, never truncated
    sub = CorpusConfig(name="c", format="text", path=str(p), splits=[], max_sentence_length=None, max_sentences=5, seed=3)
    a, b = load_corpus(sub), load_corpus(sub)
    assert [len(s) for s in a.sentences] == [len(s) for s in b.sentences]
    assert [len(s) for s in a.sentences] == sorted(len(s) for s in a.sentences)  # corpus order kept
    assert [s.index for s in a.sentences] == list(range(5))
    other = load_corpus(CorpusConfig(name="c", format="text", path=str(p), splits=[], max_sentence_length=None, max_sentences=5, seed=4))
    assert other.fingerprint != a.fingerprint


def test_missing_and_empty_corpus(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_corpus(CorpusConfig(path=str(tmp_path / "nope")))
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(UserError, match="holds no sentences"):
        load_corpus(CorpusConfig(name="e", format="text", path=str(tmp_path / "e.txt"), splits=[]))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x-train.conllu").write_text("")
    with pytest.raises(UserError, match="no file for split 'dev'"):
        load_corpus(CorpusConfig(path=str(tmp_path / "d"), splits=["dev"]))


def test_non_utf8_and_bom_files(tmp_path):
    block = conllu_block(["The", "café"], ["DET", "NOUN"], "s1")
    (tmp_path / "bom.conllu").write_bytes(b"\xef\xbb\xbf" + block.encode())
    (sent,) = list(read_conllu(tmp_path / "bom.conllu", "train"))  # a byte-order mark is accepted
    assert sent.words == ["The", "café"]
    (tmp_path / "latin1.conllu").write_bytes(block.encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.conllu:2: not UTF-8 text \(byte 0xe9 at column 17\)"):
        list(read_conllu(tmp_path / "latin1.conllu", "train"))
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError, match=r"binary.txt:\d+: not UTF-8 text"):
        list(read_plain_text(tmp_path / "binary.txt"))
    (tmp_path / "bom.txt").write_bytes("\ufeffhello world\n".encode())
    assert [s.words for s in read_plain_text(tmp_path / "bom.txt")] == [["hello", "world"]]


def test_corpus_encoding_option(tmp_path):
    """corpus.encoding reads Latin-1 and UTF-16 files to the same sentences as their UTF-8 copy; the
    corpus fingerprint is the content's (the same sentences in another encoding are the same corpus)."""
    block = conllu_block(["The", "café", "naïve"], ["DET", "NOUN", "ADJ"], "s1")
    for name, enc in (("utf8", "utf-8"), ("latin1", "latin-1"), ("utf16", "utf-16")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x-train.conllu").write_bytes(block.encode(enc))
    ref = load_corpus(CorpusConfig(path=str(tmp_path / "utf8")))
    for name, enc in (("latin1", "latin-1"), ("utf16", "utf-16")):
        got = load_corpus(CorpusConfig(path=str(tmp_path / name), encoding=enc))
        assert [s.words for s in got.sentences] == [["The", "café", "naïve"]]
        assert got.fingerprint == ref.fingerprint
    with pytest.raises(UserError, match="corpus.encoding='klingon' is not a known text encoding"):
        load_corpus(CorpusConfig(path=str(tmp_path / "latin1"), encoding="klingon"))
    (tmp_path / "t.txt").write_bytes("très bien\n".encode("cp1252"))
    assert [s.words for s in read_plain_text(tmp_path / "t.txt", encoding="cp1252")] == [["très", "bien"]]
    # a corpus option that changes nothing (the seed without a sentence cap) keeps the fingerprint
    assert load_corpus(CorpusConfig(path=str(tmp_path / "utf8"), seed=5)).fingerprint == ref.fingerprint
    assert load_corpus(CorpusConfig(path=str(tmp_path / "utf8"), multiword="surface")).fingerprint == ref.fingerprint


@pytest.mark.skipif(not SHARED_EWT.exists(), reason=f"the reference copy of UD English EWT is not at {SHARED_EWT}")
def test_the_packaged_ewt_is_the_reference_corpus():
    """The xz copy shipped in the package reads to the same sentences (same fingerprint) as the
    uncompressed reference, every split."""
    for split in ("train", "dev", "test"):
        ref = load_corpus(CorpusConfig(path=str(SHARED_EWT), splits=[split], max_sentence_length=None))
        packaged = load_corpus(CorpusConfig(path="builtin:ud-english-ewt", splits=[split], max_sentence_length=None))
        assert packaged.fingerprint == ref.fingerprint and len(packaged.sentences) == len(ref.sentences)
        assert packaged.files == [str(p) for p in sorted(PACKAGED_EWT.glob(f"*-{split}.conllu.xz"))]
