"""Bad input from the command line: one clear message, exit status 2, no traceback, and
nothing that could pass for a complete store."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, conllu_block


def _cli(tmp_path, *args, flags=()):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "concepts.extract", *flags, f"paths.workspace={tmp_path / 'ws'}", "extraction.progress=false", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )


def _no_complete_store(tmp_path):
    for m in Path(tmp_path / "ws").rglob("manifest.json"):
        assert '"complete": false' in m.read_text()


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("missing corpus", ["corpus.path=/nonexistent/ewt"], "corpus path /nonexistent/ewt does not exist"),
        ("unknown model", ["model=/nonexistent/model-dir"], "cannot load model '/nonexistent/model-dir'"),
        ("bad enum", ["extraction.aggregation=median"], "extraction.aggregation"),
        ("bad value", ["extraction.batch_size=0"], "extraction.batch_size=0 must be at least 1"),
        ("bad shard", ["corpus.shard=3", "corpus.num_shards=2"], "need 0 <= shard < num_shards"),
        ("unknown key", ["extraction.batchsize=3"], "batchsize"),
        ("added unknown key", ["+extraction.batchsize=3"], "unknown option(s): extraction.batchsize"),
    ],
)
def test_bad_option_or_path(tmp_path, text_corpus, case, args, message):
    if case != "missing corpus":
        args = ["corpus=text", f"corpus.path={text_corpus}", *args]
    r = _cli(tmp_path, *args)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out  # Hydra's own config errors too
    assert message in out, out
    assert "Traceback" not in out, out
    _no_complete_store(tmp_path)


def test_empty_and_malformed_corpus(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    r = _cli(tmp_path, "corpus=text", f"corpus.path={empty}")
    assert r.returncode == 2 and "holds no sentences" in r.stderr + r.stdout and "Traceback" not in r.stderr
    bad = tmp_path / "bad-train.conllu"
    bad.write_text(conllu_block(["Hi", "."], ["INTJ", "PUNCT"], "a") + "1\tx\tx\tX\n\n")
    r = _cli(tmp_path, f"corpus.path={bad}")
    out = r.stdout + r.stderr
    assert r.returncode == 2 and f"{bad}:6: malformed CoNLL-U" in out and "Traceback" not in out
    _no_complete_store(tmp_path)


def test_model_shortcut_loads_a_local_folder(tiny_models, text_corpus, tmp_path):
    r = _cli(tmp_path, f"model={tiny_models['bert']}", "corpus=text", f"corpus.path={text_corpus}")
    assert r.returncode == 0, r.stderr
    said = [ln.split(" - ", 1)[-1] for ln in (r.stdout + r.stderr).splitlines()]
    ends = [i for i, s in enumerate(said) if s.startswith("extract: finished in ")]
    assert said.count("extract: started") == 1 and len(ends) == 1 and said.index("extract: started") < ends[0]
    manifests = list(Path(tmp_path / "ws").rglob("manifest.json"))
    assert len(manifests) == 1 and '"complete": true' in manifests[0].read_text()
    assert manifests[0].parent.parent.parent.name == Path(tiny_models["bert"]).name
    # the corpus is named by its file when corpus.name is not given
    assert manifests[0].parent.parent.name.startswith(f"{Path(text_corpus).stem}-")


def test_corpus_name_comes_from_its_path():
    from concepts.core.cli import name_corpus_by_path

    assert name_corpus_by_path(["corpus.path=/data/ud-english-gum/"])[-1] == "corpus.name=ud-english-gum"
    assert name_corpus_by_path(["corpus=text", "corpus.path=my corpus.txt"])[-1] == "corpus.name=my-corpus"
    assert name_corpus_by_path(["corpus.path=a.txt", "corpus.name=x"]) == ["corpus.path=a.txt", "corpus.name=x"]
    assert name_corpus_by_path(["corpus.path=a.txt,b.txt"]) == ["corpus.path=a.txt,b.txt"]  # a sweep: left alone
    assert name_corpus_by_path(["layer=3"]) == ["layer=3"]


def test_multirun_jobs_split_the_shards(tiny_models, text_corpus, tmp_path):
    r = _cli(tmp_path, f"model={tiny_models['gpt2']}", "corpus=text", f"corpus.path={text_corpus}",
             "extraction.shard_sentences=2", "corpus.num_shards=2", "corpus.shard=0,1", flags=["-m"])
    assert r.returncode == 0, r.stderr
    said = [ln.split(" - ", 1)[-1] for ln in (r.stdout + r.stderr).splitlines()]
    assert {s for s in said if s.startswith("extract (job")} >= {"extract (job 0): started", "extract (job 1): started"}
    assert sum(s.startswith("extract (job 1): finished in") for s in said) == 1
    (manifest,) = Path(tmp_path / "ws").rglob("activations/manifest.json")
    from concepts.extraction.store import ActivationStore

    store = ActivationStore(manifest.parent)
    assert store.manifest["n_shards"] == 4 and len(store.shard_dirs()) == 4
    assert store.tokens()["sentence"].nunique() == 8


@pytest.mark.parametrize("override,says", [
    ("extraction.nope=1", "extraction.nope is not an option (see --help; the options of extraction: aggregation"),
    ("extraction.aggregaton=first", "did you mean extraction.aggregation?"),
    ("extration.dtype=float16", "this command has no option extration (see --help for its options); did you mean extraction?"),
    ("discovery.k=3", "discovery.k: this command has no option discovery"),
    ("extraction.batch_size=many", "could not be converted to Int"),
    ("model=hf corpus=nonexistent", "Available options in 'corpus'"),
])
def test_config_errors_hydra_catches_are_one_line_and_exit_2(tmp_path, override, says):
    r = _cli(tmp_path, *override.split())
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in lines[0]


def _app(tmp_path, module, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("module, config, absent", [
    ("concepts.extract", "extract", {"clustering", "probe", "ranking", "annotator"}),
    ("concepts.discover", "discover", {"probe", "ranking", "annotator", "labels"}),
    ("probing.train", "train", {"ranking", "neurons", "experiment"}),
    ("neurons.pipeline", "pipeline", set()),
])
def test_help_lists_only_the_groups_an_app_uses(tmp_path, module, config, absent):
    from omegaconf import OmegaConf

    out = _app(tmp_path, module, "--help")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith(f"`python -m {module}`")  # its description, from the module
    listed = {ln.split()[0] for ln in text.split("option in use first):")[1].split("\n\n")[0].splitlines() if ln.strip()}
    used = {next(iter(d)).removeprefix("optional ") for d in OmegaConf.load(Path(REPO) / "conf" / f"{config}.yaml").defaults
            if not isinstance(d, str)}
    assert listed == used and not listed & absent
    assert "model       minilm | " in text and "--cfg job" in text


def test_a_mistyped_model_gets_a_did_you_mean_and_offline_fails_at_once(tmp_path):
    out = _app(tmp_path, "concepts.extract", "model=minlm", f"paths.workspace={tmp_path / 'ws'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "did you mean model=minilm?" in out.stderr and "HF_HUB_OFFLINE=1" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1  # one line: no Hub call, no retry warnings
    assert not (tmp_path / "ws").exists()
    # with the Hub on as well: a name this close to a config is refused before any Hub call, the
    # hint at the end of its one line, and the way to load a Hub model of that name all the same
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = subprocess.run([sys.executable, "-m", "neurons.pipeline", "model=minlm", f"paths.workspace={tmp_path / 'ws'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.strip().endswith("did you mean model=minilm?") and "model=hf model.name_or_path=minlm" in out.stderr
    assert not (tmp_path / "ws").exists()
