"""A normal (not editable) install is self-contained: the wheel carries the configs and the default
corpus, and every app runs from any working folder with no sibling folders."""

import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the project's wheel installed. Its dependencies come from this
    environment's site-packages through a .pth line (nothing is downloaded); the project itself
    comes only from the wheel (the editable install's finder is not loaded from a .pth line)."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "workspace", "build", "dist", "*.egg-info", "__pycache__", "tests", "bench", "outputs", "multirun"))
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("latent_concepts-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", purelib,
                    str(wheel)], check=True, capture_output=True, timeout=300)
    # console scripts: --target does not write them; make the one the issue names from its entry point
    script = env_dir / "bin" / "latent-concepts"
    script.write_text(f"#!{py}\nimport sys\nfrom neurons.pipeline import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return env_dir


def _run(env_dir: Path, args: list[str], cwd: Path, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CONCEPTS_EWT", "CONCEPTS_WORKSPACE")}
    env.update(WANDB_MODE="offline", HF_HUB_OFFLINE="1")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_runs_from_any_folder(installed, tiny_models, tmp_path):
    py = str(installed / "bin" / "python")
    where = _run(installed, [py, "-c", "import concepts, concepts.core.cli as c; print(concepts.__file__); print(c.CONF_DIR)"], tmp_path)
    assert where.returncode == 0, where.stderr
    module, conf = where.stdout.split()
    assert str(installed) in module and str(installed) in conf and not module.startswith(str(REPO))
    assert (Path(conf) / "pipeline.yaml").is_file() and (Path(conf) / "model" / "minilm.yaml").is_file()
    help_ = _run(installed, [str(installed / "bin" / "latent-concepts"), "--help"], tmp_path)
    assert help_.returncode == 0, help_.stderr
    assert "corpus" in help_.stdout and "model" in help_.stdout
    # a tiny extraction on the default corpus (shipped in the wheel) from an empty folder
    out = _run(installed, [py, "-m", "concepts.extract", "model=hf", f"model.name_or_path={tiny_models['bert']}",
                           "model.name=tiny", "corpus.max_sentences=20", "paths.workspace=ws", "extraction.progress=false"],
               tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (manifest,) = (tmp_path / "ws").rglob("activations/manifest.json")
    import json

    m = json.loads(manifest.read_text())
    assert m["complete"] and m["counts"]["sentences"] + m["counts"]["sentences_skipped_subword_limit"] == 20
    assert all(str(installed) in f and f.endswith(".conllu.xz") for f in m["inputs"]["corpus_files"])
