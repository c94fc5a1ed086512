"""API keys never reach Hydra: a key on the command line (any option, with or without `+`,
`++`, `~`), in a config file (`--config-dir`, `--config-path`, `--config-name`, a config group
option, an experiment), or behind an interpolation is refused with one line and exit status 2
before Hydra writes `.hydra/` or a log, and the key is in no byte of the output or of any file.
The supported way, the key exported and `annotator.api_key_env` naming its variable, passes."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from concepts.core.secrets import check_argv, looks_like_secret, names_a_secret

# ---------------------------------------------------------------- the value detector

# ordinary values of this project's configs (and their neighbours): never refused
ORDINARY = [
    "", "auto", "cuda:0", "0.95", "null", "xpos", "ward", "kmeans_ward", "tcn_paper", "hf_local", "sk", "skip",
    "OPENAI_API_KEY", "HF_TOKEN", "WANDB_API_KEY", "api-docs", "key-value", "task-key", "en_core_web_sm",
    "gpt-4o-mini", "gpt-4o-2024-08-06", "gpt-3.5-turbo-0125", "o1-preview", "claude-3-5-sonnet-20241022",
    "sentence-transformers/all-MiniLM-L6-v2", "meta-llama/Meta-Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct",
    "FacebookAI/xlm-roberta-base", "bert-base-cased", "MiniLM-L12-H384-uncased", "XLMRobertaForMaskedLM",
    "embedded:minilm", "openai:gpt-4o-mini:default",
    "/home/user/data/ud-english-ewt/en_ewt-ud-train.conllu", "~/corpora/ud-english-gum/", "workspace/cache/llm.sqlite",
    "http://localhost:8000/v1", "https://api.openai.com/v1", "http://user@localhost:8000/v1",
    "https://huggingface.co/datasets/universal_dependencies", "s3://bucket/runs/concepts-K600.parquet",
    "${oc.env:OPENAI_API_KEY}", "${paths.workspace}/logs/${hydra.job.name}/${oc.env:CONCEPTS_RUN_STAMP,${now:%H}}",
    "activations-3f2a9c1e7b4d5a6f8e9d0c1b2a3f4e5d.npy", "a265f773a47193eed794233aa2a0f0bb6d3eaa63",
    "models--bert-base-cased/snapshots/a265f773a47193eed794233aa2a0f0bb6d3eaa63/config.json",
    "sha256-9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "123e4567-e89b-12d3-a456-426614174000", "2024-01-01_12-00-00-ab12cd", "run-20240101_120000-3k9x2b7q",
    "You are a helpful assistant. Name the concept these words share in 2-5 words: {words}",
    "%(asctime)s][%(name)s][%(levelname)s] - %(message)s",
    # added after a review of the detector's rules (not blind): names that start like a provider prefix
    "hf_dataset_2024_release_v2_final", "ghp_settings", "npm_modules_cache_2024", "sk-learn",
]

# keys in the formats providers issue, bare or inside a longer value: always refused
KEYS = [
    "sk-" + "Ab3dEf6hIj9lMn2pQr5tUv8xYz1BcD4fGh7jKl0nOp3rSt6v",
    "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0_-uvwxYZ" * 2,
    "sk-ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-Dc_Ba" * 2 + "AA",
    "sk-test-" + "0123456789abcdef" * 2,
    "sk-test-DO-NOT-LEAK-4242",
    "sk-or-v1-" + "0f1e2d3c4b5a69788796a5b4c3d2e1f0" * 2,
    "sk_live_" + "51HxYzAbCdEf0123456789Gh",
    "rk_live_" + "51HxYzAbCdEf0123456789Gh",
    "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz12345678",
    "ghp_" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRS",
    "gsk_" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2yZ3aB4cD5eF6gH7",
    "xai-" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2yZ3" * 2,
    "AIzaSyA-1234567890abcdefghijklmnopqrstu",
    "AKIAIOSFODNN7EXAMPLE",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "glpat-" + "xY1zA2bC3dE4fG5hI6jK",
    "r8_" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2yZ3",
    "pplx-" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2yZ3aB4cD5eF6",
    "nvapi-" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2yZ3aB4cD5eF6gH7iJ8kL9mN0oP1qR2",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "-----BEGIN RSA PRIVATE KEY-----",
    "AbCdEf1234567890GhIjKlMnOp",  # a long token of mixed case and digits, no provider prefix
    "Bearer sk-test-0123456789abcdef0123",
    "https://user:s3cretPassw0rd@example.com/v1",
    "http://localhost:8000/v1?api_key=abc123def456",
    "https://example.com/v1?token=0123456789&x=1",
    "--api-key=sk-test-0123456789abcdef0123",
    "annotator.api_key_env=sk-test-0123456789abcdef0123",
]


@pytest.mark.parametrize("value", ORDINARY)
def test_an_ordinary_value_is_not_taken_for_a_key(value):
    assert not looks_like_secret(value)


@pytest.mark.parametrize("value", KEYS)
def test_a_key_is_recognised_alone_or_inside_a_value(value):
    assert looks_like_secret(value)


@pytest.mark.parametrize("name, secret", [
    ("api_key", True), ("API_KEY", True), ("apikey", True), ("key", True), ("openai_api_key", True),
    ("hf_token", True), ("token", True), ("access_token", True), ("secret", True), ("client_secret", True),
    ("password", True), ("OPENAI_API_KEY", True), ("private_key", True),
    ("api_key_env", False), ("token_env", False), ("max_tokens", False), ("tokens_per_minute", False),
    ("exclude_keys", False), ("keys", False), ("model", False), ("base_url", False), ("keyword", False),
    ("monkey", False), ("tag_sets", False),
])
def test_option_names_that_hold_secrets(name, secret):
    assert names_a_secret(name) is secret


def test_command_line_scan_names_the_option_and_never_the_key():
    key = _fake_key()
    for args, where in [
        ([f"annotator.api_key_env={key}"], "annotator.api_key_env"),
        ([f"+annotator.api_key={key}"], "annotator.api_key"),
        ([f"++annotator.api_key={key}"], "annotator.api_key"),
        ([f"~annotator.api_key={key}"], "annotator.api_key"),
        (["annotator.key=hunter2"], "annotator.key"),
        (["+openai_api_key=hunter2"], "openai_api_key"),
        ([f"annotator.model={key}"], "annotator.model"),
        (["annotator.api_key_env=not a name"], "annotator.api_key_env"),
        (["--token", "hunter2"], "--token"),
    ]:
        message = check_argv(["model=minilm", *args])
        assert message is not None and where in message and "api_key_env=OPENAI_API_KEY" in message, args
        assert key not in message and "hunter2" not in message and "\n" not in message
    ok = ["annotator=openai", "annotator.api_key_env=OPENAI_API_KEY", "annotator.model=gpt-4o-mini",
          "model=sentence-transformers/all-MiniLM-L6-v2", "annotator.api_key_env=A_KEY,B_KEY", "-m",
          "annotator.api_key_env='${oc.env:WHICH_VAR}'", "--config-dir", "/tmp/conf", "~annotator.api_key"]
    assert check_argv(ok) is None


def test_redact_leaves_no_key_in_a_message():
    from concepts.core.secrets import redact

    key = _fake_key()
    for text in [f"Could not override 'annotator.api_key'. To append to your config use +annotator.api_key={key}",
                 f"Value '{key}' of type 'str' could not be converted to Integer", f"Bearer {key}"]:
        assert key not in redact(text)
    assert "Could not override 'annotator.api_key'" in redact(f"Could not override 'annotator.api_key'. Use {key}")
    assert redact("Key 'nope' not in 'ExtractionConfig'") == "Key 'nope' not in 'ExtractionConfig'"


# ---------------------------------------------------------------- the real entry points

def _fake_key() -> str:
    return "sk-test-" + secrets.token_hex(16)


def _run(module, args, cwd, env_extra=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "HYDRA_FULL_ERROR")}
    env.update({"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, timeout=timeout)


def _assert_nowhere(key: str, out: subprocess.CompletedProcess, *folders: Path) -> None:
    blob = out.stdout + out.stderr
    assert key.encode() not in blob, blob.decode(errors="replace")
    for folder in folders:
        for f in Path(folder).rglob("*"):
            if f.is_file() and not f.is_symlink():
                assert key.encode() not in f.read_bytes(), f


def _assert_refused(key: str, out: subprocess.CompletedProcess, tmp_path: Path, *where: str) -> str:
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert out.returncode == 2, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    assert "api_key_env=OPENAI_API_KEY" in lines[0] and all(w in lines[0] for w in where), lines[0]
    _assert_nowhere(key, out, tmp_path / "cwd", tmp_path / "ws")  # (the user's config folder holds it)
    written = [p for p in tmp_path.rglob("*") if p.name in (".hydra", "logs", "outputs", "multirun") or p.suffix == ".log"]
    assert not written, written
    return lines[0]


CASES = {  # name: (the arguments, given the key, a plain password and the user config folder; what the message names)
    "api_key_env": (lambda k, p, d: [f"annotator.api_key_env={k}"], ("annotator.api_key_env",)),
    "plus": (lambda k, p, d: [f"+annotator.api_key={k}"], ("annotator.api_key",)),
    "plus plus": (lambda k, p, d: [f"++annotator.api_key={k}"], ("annotator.api_key",)),
    "no plus": (lambda k, p, d: [f"annotator.api_key={k}"], ("annotator.api_key",)),
    "tilde": (lambda k, p, d: [f"~annotator.api_key_env={k}"], ("annotator.api_key_env",)),
    "another option name": (lambda k, p, d: [f"+openai_api_key={k}"], ("openai_api_key",)),
    "a secret option, a plain value": (lambda k, p, d: [f"+annotator.key={p}"], ("annotator.key",)),
    "any option": (lambda k, p, d: [f"annotator.model={k}"], ("annotator.model",)),
    "a sweep": (lambda k, p, d: ["-m", f"annotator.api_key_env=OPENAI_API_KEY,{k}"], ("annotator.api_key_env",)),
    "group file in --config-dir": (lambda k, p, d: ["--config-dir", str(d), "annotator=leaky"],
                                   ("annotator/leaky.yaml", "annotator.api_key_env")),
    "group file, -cd=": (lambda k, p, d: [f"-cd={d}", "annotator=leaky"], ("annotator/leaky.yaml",)),
    "a secret option in a group file": (lambda k, p, d: ["--config-dir", str(d), "annotator=named"],
                                        ("annotator/named.yaml", "annotator.password")),
    "a group sweep": (lambda k, p, d: ["-m", "--config-dir", str(d), "annotator=openai,leaky"],
                      ("annotator/leaky.yaml",)),
    "a glob sweep": (lambda k, p, d: ["-m", "--config-dir", str(d), "annotator=glob(leak*)"],
                     ("annotator/leaky.yaml",)),
    "experiment file": (lambda k, p, d: ["--config-dir", str(d), "+experiment=leaky"],
                        ("experiment/leaky.yaml", "annotator.model")),
    "--config-name": (lambda k, p, d: ["--config-path", str(d), "--config-name", "primary"],
                      ("primary.yaml", "annotator.api_key_env")),
    "-cn with --config-dir": (lambda k, p, d: ["-cd", str(d), "-cn", "primary"], ("primary.yaml",)),
    "interpolation": (lambda k, p, d: ["annotator.api_key_env=${oc.env:LEAKY_VAR}"], ("annotator.api_key_env",)),
    "interpolation in a file": (lambda k, p, d: ["--config-dir", str(d), "annotator=indirect"],
                                ("annotator/indirect.yaml", "annotator.api_key_env")),
    "--cfg job shows nothing": (lambda k, p, d: ["--cfg", "job", "--config-dir", str(d), "annotator=leaky"],
                                ("annotator/leaky.yaml",)),
    "Hydra's env_copy": (lambda k, p, d: ["hydra.job.env_copy=[LEAKY_VAR]"], ("hydra.job.env_set.LEAKY_VAR",)),
}


def _user_conf(d: Path, key: str, config_name: str, where: str = "annotator.api_key_env", plain: str = "") -> Path:
    """A user config folder: group options and an experiment holding `key`, and a primary config (a copy
    of the app's, which also finds the packaged groups under --config-path) with `key` at `where`."""
    from omegaconf import OmegaConf

    from concepts.core.cli import CONF_DIR

    (d / "annotator").mkdir(parents=True)
    (d / "experiment").mkdir()
    (d / "annotator" / "leaky.yaml").write_text(f"backend: openai\nmodel: gpt-4o-mini\napi_key_env: {key}\n")
    (d / "annotator" / "named.yaml").write_text(f"backend: openai\npassword: {plain or 'x'}\n")
    (d / "annotator" / "indirect.yaml").write_text("backend: openai\napi_key_env: ${oc.env:LEAKY_VAR}\n")
    (d / "experiment" / "leaky.yaml").write_text(f"# @package _global_\nannotator:\n  model: {key}\n")
    primary = OmegaConf.load(Path(CONF_DIR) / f"{config_name}.yaml")
    OmegaConf.update(primary, "hydra.searchpath", [f"file://{CONF_DIR}"], force_add=True)
    OmegaConf.update(primary, where, key, force_add=True)
    OmegaConf.save(primary, d / "primary.yaml")
    return d


@pytest.mark.parametrize("case", list(CASES))
def test_a_key_is_refused_before_hydra_writes_anything(case, tmp_path):
    cwd, ws = tmp_path / "cwd", tmp_path / "ws"
    cwd.mkdir()
    key, plain = _fake_key(), "hunter2" + secrets.token_hex(4)
    args, where = CASES[case]
    conf = _user_conf(tmp_path / "userconf", key, "annotate", plain=plain)
    out = _run("concepts.annotate", [*args(key, plain, conf), f"paths.workspace={ws}"], cwd, {"LEAKY_VAR": key})
    _assert_refused(key, out, tmp_path, *where)
    _assert_nowhere(plain, out)


@pytest.mark.parametrize("module, config", [
    ("concepts.extract", "extract"), ("concepts.discover", "discover"), ("concepts.score", "score"),
    ("probing.train", "train"), ("neurons.rank", "rank"), ("neurons.pipeline", "pipeline"),
])
def test_every_stage_refuses_a_key_on_the_command_line_and_in_its_config_file(module, config, tmp_path):
    cwd, ws = tmp_path / "cwd", tmp_path / "ws"
    cwd.mkdir()
    key = _fake_key()
    conf = _user_conf(tmp_path / "userconf", key, config, where="model.name")
    out = _run(module, [f"+openai_api_key={key}", f"paths.workspace={ws}"], cwd)
    _assert_refused(key, out, tmp_path, "openai_api_key")
    out = _run(module, ["--config-dir", str(conf), "--config-name", "primary", f"paths.workspace={ws}"], cwd)
    _assert_refused(key, out, tmp_path, "primary.yaml", "model.name")


def test_the_key_in_the_environment_is_the_supported_way(tmp_path):
    cwd, ws = tmp_path / "cwd", tmp_path / "ws"
    cwd.mkdir()
    key = _fake_key()
    # the check passes; the run then stops (no concepts folder to annotate), and the key is nowhere
    out = _run("concepts.annotate", ["annotator=openai", "annotator.api_key_env=OPENAI_API_KEY",
                                     "annotator.base_url=http://127.0.0.1:9/v1", f"paths.workspace={ws}",
                                     f"annotation.concepts={cwd / 'missing'}"], cwd, {"OPENAI_API_KEY": key})
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert "api_key_env=OPENAI_API_KEY" not in text, text  # not refused by the key check
    assert list(Path(ws).rglob(".hydra")), text  # Hydra did run and write its files
    _assert_nowhere(key, out, cwd, ws)


def test_the_default_configs_pass_the_check():
    import importlib

    from concepts.core.cli import CONF_DIR
    from concepts.core.secrets import config_problem

    for module in ("concepts.extract", "concepts.discover", "concepts.annotate", "concepts.score", "probing.train",
                   "neurons.rank", "neurons.pipeline"):
        importlib.import_module(module)  # registers its config schema, as the app does

    key = _fake_key()
    for name in ("extract", "discover", "annotate", "score", "train", "rank", "pipeline"):
        assert config_problem(name, [], CONF_DIR) is None, name
        assert config_problem(name, ["-m", "hydra/launcher=joblib", "model=minilm,gpt2"], CONF_DIR) is None, name
        # the check composed that config: a key in it is found
        assert "paths.workspace" in config_problem(name, [f"paths.workspace=/tmp/{key}"], CONF_DIR), name
    for experiment in sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")):
        assert config_problem("pipeline", [f"experiment={experiment}"], CONF_DIR) is None, experiment
    assert config_problem("annotate", ["annotator=openai", "annotator.model=gpt-4o", "hydra/launcher=slurm"],
                          CONF_DIR) is None
