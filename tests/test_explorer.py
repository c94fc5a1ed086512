import re

from browser import rendered_dom, screenshot

from concepts.discovery.explorer import explorer_data, write_explorer
from concepts.discovery.records import Annotation, Concept, Member

SENTS = [["the", "dog", "barks", "</script>"], ["a", "cat", "sleeps"], ["dogs", "and", "cats"]]


def _by_layer():
    by = {}
    for layer in (0, 1):
        animals = Concept.build("m", layer, 2, 0, [Member("dog", 0, 1), Member("cat", 1, 1), Member("dogs", 2, 0), Member("cats", 2, 2)])
        rest = Concept.build("m", layer, 2, 1, [Member("barks", 0, 2), Member("sleeps", 1, 2), Member("</script>", 0, 3)])
        animals.alignment = {"upos": {"best": [["NOUN", 1.0]], "aligned": "NOUN"}}
        if layer == 1:
            animals.annotations.append(Annotation("alignment", "-", "default", "animals"))
        by[layer] = [animals, rest]
    return by


def test_links_between_layers():
    data = explorer_data(_by_layer(), SENTS, "t")
    first = data["layers"][0]["concepts"][0]
    assert first["id"] == 0 and first["links"] == [[1, 0, 4]]  # all 4 tokens sit in concept 0 of layer 1


def test_explorer_renders_in_chromium(tmp_path):
    page = tmp_path / "explorer.html"
    write_explorer(page, _by_layer(), SENTS, "tiny <model>")
    dom = rendered_dom(page.as_uri(), tmp_path)
    cards = re.findall(r'<section class="concept" id="L(\d+)-C(\d+)"', dom)
    assert cards == [("0", "0"), ("0", "1")]  # layer 0 shown first, larger concept first
    assert "<mark>dog</mark>" in dom and "upos=NOUN" in dom and "&lt;/script&gt;" in dom
    assert "2 concepts in layer 0" in dom
    found = rendered_dom(page.as_uri() + "?q=animals", tmp_path)  # search by label, all layers
    assert re.findall(r'<section class="concept" id="(L\d+-C\d+)"', found) == ["L1-C0"]
    found = rendered_dom(page.as_uri() + "?q=sleeps", tmp_path)  # search by word
    assert re.findall(r'<section class="concept" id="(L\d+-C\d+)"', found) == ["L0-C1", "L1-C1"]
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body style='background:#f6f7f9'></body></html>")
    empty = screenshot(blank.as_uri(), tmp_path / "blank.png", tmp_path).stat().st_size
    for url in (page.as_uri(), page.as_uri() + "#L1-C1"):  # a link to a concept opens its layer
        assert screenshot(url, tmp_path / "shot.png", tmp_path).stat().st_size > 3 * empty
