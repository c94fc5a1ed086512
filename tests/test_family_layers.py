"""Layer subsets on every family of the conformance suite: the vectors of the kept layers equal
those of the full pass, whether they came by hooks (the forward pass stopped after the deepest
layer) or by the full pass (a family whose blocks the hooks do not fit)."""

import numpy as np
import pytest
import torch
from families import FAMILIES, build

from concepts.corpus import Sentence
from concepts.extraction.config import ModelConfig
from concepts.extraction.extractor import Extractor
from concepts.extraction.models import load_model, probe_sentences
from concepts.extraction.stage import encode_and_extract

SENTENCES = [s.split() for s in ("the cat sat on the mat .", "a dog barks at 7 p.m. today", "she can't find 2,000 letters")]


@pytest.fixture(scope="module")
def family_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("family-layers")
    return lambda family: load_model(ModelConfig(name_or_path=str(build(family, root / family))))


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_subset_equals_the_full_pass(family_model, family):
    lm = family_model(family)
    sents = [Sentence(w, index=i) for i, w in enumerate(SENTENCES)] + probe_sentences()
    _, _, full = encode_and_extract(lm, Extractor(lm, "mean", 3), sents, 512, "skip", torch.float32)
    last = lm.n_layers - 1
    for layers in ([0], [1], [0, last], [last]):
        ex = Extractor(lm, "mean", 3, layers=layers)
        _, _, part = encode_and_extract(lm, ex, sents, 512, "skip", torch.float32)
        assert part.shape[0] == len(layers)
        np.testing.assert_allclose(part.numpy(), full[layers].numpy(), atol=1e-5, err_msg=f"{family} {layers}")
    # hooks fit every family but XLNet (two streams) and ALBERT (one shared layer group), which
    # fall back to the full pass: for the others the forward pass stops after an inner layer
    assert Extractor(lm, "mean", 3, layers=[1]).taps.computes_all == (family in ("xlnet", "albert")), family
