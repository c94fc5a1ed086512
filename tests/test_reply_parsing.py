import json

import pytest
from reply_table import REPLIES
from reply_table_independent import REPLIES_INDEPENDENT

from concepts.annotation.prompts import get_prompt, parse_detection, penn_tag


@pytest.mark.parametrize("kind,prompt_id,reply,finish,status,label", REPLIES, ids=[r[0] for r in REPLIES])
def test_every_reply_kind(kind, prompt_id, reply, finish, status, label):
    p = get_prompt(prompt_id).parse(reply, finish)
    assert (p.status, p.label) == (status, label)
    assert (p.label is not None) == (p.status == "ok")  # a label exactly when ok


@pytest.mark.parametrize("kind,prompt_id,reply,finish,status,label", REPLIES_INDEPENDENT,
                         ids=[r[0] for r in REPLIES_INDEPENDENT])
def test_replies_written_independently_from_the_specification(kind, prompt_id, reply, finish, status, label):
    """A table another author wrote from the label definition alone (a tuple: either form is right)."""
    p = get_prompt(prompt_id).parse(reply, finish)
    assert p.status == status
    assert p.label in label if isinstance(label, tuple) else p.label == label


def test_text_and_json_give_the_same_label():
    for text in ("Concept: Animals", "Label \u2014 Animals", "**Label:** Animals", "Animals."):
        as_json = json.dumps({"label": text})
        assert get_prompt("default").parse(text, "stop").label == "Animals"
        assert get_prompt("default").parse(as_json, "stop").label == "Animals"
        assert get_prompt("structured").parse(as_json, "stop").label == "Animals"


def test_the_table_is_large_and_covers_every_status():
    assert len(REPLIES) >= 40
    assert {r[4] for r in REPLIES} == {"ok", "none", "refused", "filtered", "truncated", "unparseable"}


@pytest.mark.parametrize("reply,expected", [
    ("[1, 3]", ("ok", [0, 2])),
    ("```json\n[2]\n```", ("ok", [1])),
    ('{"fit": [1, 3]}', ("ok", [0, 2])),  # JSON mode answers with an object
    ('{"numbers": ["1", "2"]}', ("ok", [0, 1])),
    ("Here are the words that fit: [4, 5]", ("ok", [3, 4])),
    ("1, 3 and 5", ("ok", [0, 2, 4])),
    ("[]", ("ok", [])),
    ("None", ("ok", [])),
    ("[0, 9]", ("unparseable", None)),  # outside 1..5
    ('{"a": [1], "b": [2]}', ("unparseable", None)),
    ("the first and the third", ("unparseable", None)),
    ("I'm sorry, I can't help.", ("refused", None)),
])
def test_detection_replies(reply, expected):
    assert parse_detection(reply, "stop", 5) == expected


def test_penn_tags_are_normalised():
    assert penn_tag("nns") == "NNS" and penn_tag("prp$") == "PRP$" and penn_tag("NN or NNS") is None
