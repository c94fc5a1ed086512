"""How `ws/` was written: by the code of the flat layout (commit 41bdac9, before the stage
subpackages), on a tiny BERT served under a Hub id from a local Hugging Face cache (a Hub id keeps
the store's identity free of file times), 6 EWT sentences, layers 0 and 2.

    git worktree add /tmp/flat 41bdac9
    PYTHONPATH=/tmp/flat python tests/data/layout-v1/make_fixture.py /tmp/layout-v1
"""
import os
import shutil
import sys
from pathlib import Path

out = Path(sys.argv[1]).resolve()
os.environ.update(HF_HOME=str(out / "hf"), HF_HUB_OFFLINE="1", CONCEPTS_WORKSPACE=str(out / "ws"))
sys.path.insert(1, str(Path(__file__).resolve().parents[2] / "tests"))
import families  # noqa: E402

repo = out / "hf" / "hub" / "models--layout-test--tiny-bert"
families.build("bert-cased", repo / "snapshots" / ("0" * 40))
(repo / "refs").mkdir(parents=True, exist_ok=True)
(repo / "refs" / "main").write_text("0" * 40)
shutil.rmtree(out / "ws", ignore_errors=True)

from concepts import api  # noqa: E402  (the flat layout's path)

MODEL = ["model=hf", "model.name_or_path=layout-test/tiny-bert", "model.name=tiny-bert"]
EXTRACT = [*MODEL, "corpus.max_sentences=6", "extraction.store_dtype=float16", "extraction.layers=[0,2]",
           "extraction.progress=false"]
DISCOVER = ["discovery.k=4", "sampling.min_count=1", "discovery.layers=[0,2]", "discovery.explorer=false",
            "discovery.plot=false", "discovery.tag_sets=[upos,xpos]"]
print(api.run("extract", *EXTRACT).store)
print(api.run("discover", *EXTRACT, *DISCOVER).path)
