#!/usr/bin/env bash
# Run THERE (the device machine), from the repository root, with .whl carried:
#   run(command="DEADLINE=480 bash .whl/run.sh", carry=[".whl"], timeout_s=580)
# Installs the carried wheels beside the machine's torch, then benchmarks/bench_gpu.py (PPO, DQN,
# SAC for 1, 2048, 32 and 512 seeds until DEADLINE seconds): every row compiles first in 12
# parallel processes (the machine has 16 cores; 4 Inductor compile threads each), then the rows
# are measured one at a time on the warm cache. The log and JSON come back in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor TORCH_EXTENSIONS_DIR=/tmp/ext \
  TORCHINDUCTOR_COMPILE_THREADS=4
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, tensordict, torchrl; print('torch', torch.__version__, 'tensordict', tensordict.__version__, 'torchrl', torchrl.__version__, 'cuda', torch.cuda.is_available())"
timeout $(( ${DEADLINE:-420} + 50 )) python3 benchmarks/bench_gpu.py --deadline "${DEADLINE:-420}" --jobs 12 --warm-share 0.45 2>&1 \
  | tee "$OUT/bench_gpu.log" | grep -v '^\s*$' | tail -c 9000
cp benchmarks/results/bench_gpu.json "$OUT/" 2>/dev/null
echo done
