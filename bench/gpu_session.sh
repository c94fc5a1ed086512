#!/usr/bin/env bash
# Issue 15's GPU measurements in one device call (about 5 minutes on one H200).
# Here, first: bash bench/gpu_kit.sh   (makes .whl/ and .gpu/, ignored by git)
# Then the device tool's run, with carry [".whl", ".gpu"] and timeout_s 560:
#   bash bench/gpu_session.sh
# It writes under $OUT:
#   gpu.txt       the GPU
#   extract.log   bench_gpu_extract.py: float32 / bfloat16 / float16 extraction of a random bert-base over
#                 EWT dev+test (the model alone, cold and warm, then the sampled store), the share outside
#                 the forward pass, the costliest kernels of each dtype; float16/bfloat16 also with cuDNN
#                 attention allowed (the suspected cause of the issue's slow bfloat16)
#   paper.log     bench_paper_scale.py at FRACTION (default 0.2) of the paper's 250k sentences, on the GPU
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "the wheels in .whl did not install: run bench/gpu_kit.sh here and carry .whl"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
timeout "${EXTRACT_S:-220}" python3 bench/bench_gpu_extract.py --device cuda --tokenizer .gpu/tokenizer --splits dev test \
  --out "$OUT/extract.json" 2>&1 | grep -v -E "Loading weights|Writing model" | tee "$OUT/extract.log"
timeout "${PAPER_S:-290}" python3 bench/bench_paper_scale.py --fraction "${FRACTION:-0.2}" --device cuda \
  --ward-250k-seconds 44 --tokenizer .gpu/tokenizer --workspace /tmp/paper-scale --fresh 2>&1 | tr '\r' '\n' | grep -v -E "it/s\]$|layer/s\]$|word/s\]$" \
  | tee "$OUT/paper.log"
