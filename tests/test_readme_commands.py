"""Every command in the README's bash blocks is run by the test suite, or says what it needs.

The commands are read from the README itself (continuation lines joined), so a command added
there is checked here without editing this file:

* every `python -m <app> ...` line composes into a valid config in the default run (each value
  of a sweep separately), and its module exists;
* the slow run executes each of them as written, in README order, in one empty folder, on
  small data (a few options appended that the command does not set, e.g. `corpus.max_sentences`):
  hub ids are swapped for tiny local models of the same family, the OpenAI lines talk to a
  local OpenAI-compatible server on 127.0.0.1 with a made-up key, placeholders (`my.txt`,
  `<stamp>`, `/path/to/saved`) are files this test writes or the folder an earlier command
  made, and `make demo` runs its Makefile recipe;
* a line whose comment says `needs` (a GPU partition on a SLURM cluster, ...) is only
  composed; `make test` is what `.ci/run` calls.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

# module -> app name of concepts.api (None: a plain argparse tool, not a Hydra app)
APPS = {"concepts.extract": "extract", "concepts.discover": "discover", "concepts.annotate": "annotate",
        "concepts.score": "score", "probing.train": "train", "neurons.rank": "rank",
        "neurons.pipeline": "pipeline", "probing.summary": None}
SMALL = ["corpus.max_sentences=60", "ranking.epochs=3", "discovery.k=20", "extraction.progress=false", "probing.min_examples=3",
         "neurons.ks=[2,8]", "neurons.max_tokens=1000", "sampling.min_count=1"]
HUB_STAND_INS = {"bert-base-cased": "bert-cased", "gpt2": "gpt2"}  # hub id -> tests/families.py family


@dataclass
class Command:
    text: str  # as written, continuation lines joined
    argv: list[str]  # the words, comment dropped
    comment: str

    @property
    def needs(self) -> str | None:
        m = re.search(r"\bneeds\b(.*)", self.comment)
        return m.group(1).strip() if m else None

    @property
    def module(self) -> str | None:
        return self.argv[self.argv.index("-m") + 1] if self.argv[:1] == [".venv/bin/python"] else None

    @property
    def args(self) -> list[str]:
        return self.argv[self.argv.index("-m") + 2:]


def readme_commands() -> list[Command]:
    text = README.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if not line.strip():
                continue
            code, _, comment = line.partition(" #")
            code = code.replace("<served model>", "served-model")
            out.append(Command(" ".join(line.split()), shlex.split(code), comment.strip()))
    return out


def sweep_values(args: list[str]) -> list[list[str]]:
    """The jobs of a multirun: every combination of the comma lists and range()s."""
    jobs = [[]]
    for a in args:
        key, eq, value = a.partition("=")
        if key.startswith("hydra") or not eq:
            continue
        if (m := re.fullmatch(r"range\((\d+),(\d+)\)", value)):
            values = [str(v) for v in range(int(m.group(1)), int(m.group(2)))]
        elif "," in value and not value.startswith("["):
            values = value.split(",")
        else:
            values = [value]
        jobs = [j + [f"{key}={v}"] for j in jobs for v in values]
    return jobs


def test_the_readme_commands_are_found_and_each_is_handled():
    cmds = readme_commands()
    assert len(cmds) >= 25
    for c in cmds:
        if c.module:
            assert c.module in APPS, f"README runs {c.module}, which this test does not know: {c.text}"
        elif c.argv[0] == "make":
            assert c.argv[1] in ("demo", "test"), c.text
        else:
            assert c.argv[0] == "export" and c.argv[1].startswith("OPENAI_API_KEY="), c.text
    assert [c.argv[1] for c in cmds if c.argv[0] == "make"] == ["demo", "test"]
    assert "\nmake test\n" in (REPO / ".ci" / "run").read_text()  # CI runs the README's test command
    marked = [c for c in cmds if c.needs]
    assert [c.module for c in marked] == ["neurons.pipeline"] and "SLURM" in marked[0].needs


def test_every_readme_command_composes(tmp_path, monkeypatch):
    """Each job of each command (the values of a sweep one by one) is a valid config of its app;
    hub ids compose as they are (composing reads no weights)."""
    from latent_concepts import api

    monkeypatch.setenv("CONCEPTS_WORKSPACE", str(tmp_path))
    checked = 0
    for c in readme_commands():
        app = APPS.get(c.module or "")
        if app is None:
            continue
        for job in sweep_values([a for a in c.args if a != "-m"]):
            job = [a.replace("my.txt", str(tmp_path / "my.txt")) for a in job]
            try:
                api.config(app, *job)
            except Exception as e:  # noqa: BLE001 - name the README line
                raise AssertionError(f"README line does not compose: {c.text}\n{job}: {e}") from e
            checked += 1
    assert checked >= 40


# ---------------------------------------------------------------- running them (slow)

def _responder(request, n):
    from llm_server import Reply, user_text

    text = user_text(request)
    if "Which of the following words fit" in text:
        return Reply('{"fit": [1]}')
    first = text.split("[", 1)[1].split(",")[0].split("]")[0] if "[" in text else "things"
    if "JSON" in text:
        return Reply(json.dumps({"label": f"words like {first}", "description": "a test label", "type": "lexical"}))
    return Reply(f"words like {first}")


def _hub_cache(tmp_path: Path) -> Path:
    """A Hugging Face cache holding tiny models under the README's hub ids (GPT-2 with 6 layers,
    as the sweep over layer=range(0,7) asks of it), read offline as the Hub's own files would be."""
    import families
    from transformers import AutoConfig, AutoModel

    home = tmp_path / "hf"
    for hub_id, family in HUB_STAND_INS.items():
        repo = home / "hub" / f"models--{hub_id.replace('/', '--')}"
        folder = families.build(family, repo / "snapshots" / ("0" * 40))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text("0" * 40)
        if family == "gpt2":
            cfg = AutoConfig.from_pretrained(folder)
            cfg.n_layer = 6
            AutoModel.from_config(cfg).save_pretrained(folder)
    return home


def _small(module: str, args: list[str]) -> list[str]:
    import importlib

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from concepts.core.cli import CONF_DIR, name_corpus_by_path, rewrite_model_shortcut

    importlib.import_module(module)  # registers the app's schemas
    app = APPS[module]

    given = {a.split("=", 1)[0].lstrip("+") for a in args}
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        fixed = [a for a in args if not a.startswith(("hydra", "-m")) and "range(" not in a
                 and ("," not in a.split("=", 1)[-1] or a.split("=", 1)[-1].startswith("["))]
        cfg = compose(config_name=app, overrides=name_corpus_by_path(rewrite_model_shortcut(fixed)))
    return [o for o in SMALL if o.split("=")[0] not in given
            and OmegaConf.select(cfg, o.split("=")[0], default="__missing__") != "__missing__"]


def _make_recipe(target: str) -> list[str]:
    text = (REPO / "Makefile").read_text()
    recipe = re.search(rf"^{target}:.*\n\t(.+)$", text, flags=re.M).group(1)
    assert recipe.startswith("$(BIN)/python -m ") and recipe.endswith("$(ARGS)"), recipe
    return [".venv/bin/python", *recipe.split()[1:-1]]


def _run(argv: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{shlex.join(argv)}\nexit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_every_readme_command_runs_on_small_data(tmp_path, tagged_corpus):
    from llm_server import LLMServer

    here = tmp_path / "user"
    here.mkdir()
    hf_home = _hub_cache(tmp_path)
    saved = str(hf_home / "hub" / "models--bert-base-cased" / "snapshots" / ("0" * 40))
    (here / "my.txt").write_text("The cat sat on the mat .\nDogs bark at night .\n" * 40)
    with open(here / "data.jsonl", "w") as f:
        for s in (tagged_corpus.read_text().split("\n\n") * 10)[:60]:
            rows = [ln.split("\t") for ln in s.splitlines() if ln and not ln.startswith("#")]
            if rows:
                f.write(json.dumps({"tokens": [r[1] for r in rows], "pos": [r[3] for r in rows]}) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CONCEPTS_WORKSPACE", "OPENAI_API_KEY")}
    env.update(PYTHONPATH=str(REPO), WANDB_MODE="offline", HF_HUB_OFFLINE="1", HF_HOME=str(hf_home))
    env.pop("HF_HUB_CACHE", None)
    ran = []
    with LLMServer(_responder) as server:
        for c in readme_commands():
            if c.needs or c.argv[:2] == ["make", "test"]:
                continue
            if c.argv[0] == "export":
                env["OPENAI_API_KEY"] = "sk-readme-test-not-a-key"
                continue
            argv = _make_recipe(c.argv[1]) if c.argv[0] == "make" else list(c.argv)
            module = argv[argv.index("-m") + 1]
            args = argv[argv.index("-m") + 2:]
            args = [a.replace("/path/to/saved", saved) for a in args]
            if module == "probing.summary":
                stamps = sorted((here / "workspace" / "logs" / "train-multirun").iterdir())
                args = [str(stamps[-1]) if "<stamp>" in a else a for a in args]
            else:
                if "annotator=openai" in args:
                    has_url = any(a.startswith("annotator.base_url=") for a in args)
                    args = [f"annotator.base_url={server.base_url}" if a.startswith("annotator.base_url=") else a
                            for a in args] + ([] if has_url else [f"annotator.base_url={server.base_url}"])
                args += _small(module, args)
            t0 = time.monotonic()
            proc = _run([sys.executable, "-m", module, *args], here, env)
            ran.append((c.text, proc))
            print(f"{time.monotonic() - t0:6.1f} s  {c.text[:100]}")
    assert len(ran) >= 24
    assert server.requests, "the OpenAI lines reached the local server"
    assert "sk-readme-test-not-a-key" not in "".join(p.stdout + p.stderr for _, p in ran)
