# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv when it is
# missing and install into it; a second run with the venv in place starts in seconds.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
CORE := $(VENV)/.frl-core
DEV := $(VENV)/.frl-dev
# One intra-op thread per process (small networks on 2 cores); a persistent compile cache.
export OMP_NUM_THREADS ?= 1
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor
export TORCHINDUCTOR_VEC_ISA_OK ?= 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: demo test lint format bench clean docs

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, from the pin in constraints.txt (a bare `torch` would pull a CUDA build).
# The C++ random-bits kernel is built here, at installation (~30 s, into TORCH_EXTENSIONS_DIR),
# not by the first run that draws a key.
$(CORE): pyproject.toml constraints.txt | $(PY)
	$(PIP) torch
	$(PIP) -e ".[plot]"
	$(PY) -c "import frl.random; print('frl.random: threefry kernel:', frl.random.native_backend())"
	touch $@

$(DEV): $(CORE)
	$(PIP) -e ".[dev,jax]"
	touch $@

# The main job: PPO on CartPole-v1, 8 seeds in one compiled, vmapped run; a table and a curve.
DEMO_OUT ?= runs/demo
demo: $(CORE)
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/frl train ppo --env CartPole-v1 --seeds 8 --steps 500000 --out $(DEMO_OUT)
	$(VENV)/bin/frl plot $(DEMO_OUT) -o $(DEMO_OUT)/curves.png

# The documentation site, offline: warnings fail the build; then every public class and function
# must be in the API reference (docs/check_api.py). The pages' Python runs in tests/test_docs.py.
docs: $(DEV)
	rm -rf docs/_build docs/_autosummary
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	$(PY) docs/check_api.py docs/_build/html

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(DEV)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# FRL_REQUIRE_JAX turns a missing JAX into a failure, so parity tests never skip silently.
# Two worker processes (one intra-op thread each, one per core); a file's tests share a process.
TEST_WORKERS ?= 2
test: lint
	FRL_REQUIRE_JAX=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(DEV)
	$(PIP) -e ".[bench]"
	$(PY) benchmarks/bench_optim.py
	$(PY) benchmarks/bench_returns.py
	$(PY) benchmarks/bench_losses.py
	$(PY) benchmarks/bench_seeds.py
	$(PY) benchmarks/bench_health.py
	$(PY) benchmarks/bench_learning.py
	$(PY) benchmarks/bench_gym.py
	$(PY) benchmarks/bench_interop.py --compile
	$(PY) benchmarks/bench_planning.py
	$(PY) benchmarks/bench_llm.py
	$(PY) benchmarks/bench_distributed.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache runs
