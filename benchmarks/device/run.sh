#!/usr/bin/env bash
# Run THERE (the device machine), from the repository root, with .whl carried:
#   run(command="DEADLINE=480 bash .whl/run.sh", carry=[".whl"], timeout_s=580)
# Installs the carried wheels beside the machine's torch, then benchmarks/bench_gpu.py (PPO, DQN,
# SAC until DEADLINE seconds), the log and JSON back in $OUT. Measured on the lent H200 (torch
# 2.11): one row's cold compile takes 3-5 minutes (PPO 1 seed: 180 s alone; DQN 1 seed: 300 s
# beside two others), and 12 rows compiled in parallel (--jobs 12) finished none in 216 s. So an
# 8-minute call measures PPO at 2048 seeds, then 1 seed, one at a time; ROWS overrides it.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor TORCH_EXTENSIONS_DIR=/tmp/ext
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, tensordict, torchrl; print('torch', torch.__version__, 'tensordict', tensordict.__version__, 'torchrl', torchrl.__version__, 'cuda', torch.cuda.is_available())"
timeout $(( ${DEADLINE:-420} + 50 )) python3 benchmarks/bench_gpu.py --deadline "${DEADLINE:-420}" ${ROWS:---algos ppo --seeds 2048 1} 2>&1 \
  | tee "$OUT/bench_gpu.log" | grep -v '^\s*$' | tail -c 9000
cp benchmarks/results/bench_gpu.json "$OUT/" 2>/dev/null
echo done
