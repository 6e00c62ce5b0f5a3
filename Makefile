# Two commands a newcomer needs: `make run` and `make test`. Each sets up .venv by itself, from
# the lock of exact, tested versions (requirements/lock.txt), and skips the set-up when it is
# already done (the stamp file tracks pyproject.toml and the lock).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOCK   := requirements/lock.txt
# PyPI has only torch's CUDA build; where pip finds no CPU build of the locked version (this
# project's machines have one on disk), torch alone is taken from PyTorch's own CPU index.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
# llama-cpp-python comes as a source package: pip builds llama.cpp with these CMake flags (about
# 4 minutes on 2 cores). A CPU build for any x86-64 from the last decade (AVX2, FMA, F16C), not
# tuned to this machine's CPU: a native build picks up AMX on some Xeons and crashed there on
# quantised models. Only the library: no tools, server, tests or multimodal (llava) parts.
# For a CUDA build see the README ("GGUF models on the GPU").
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
export CMAKE_ARGS ?= $(LLAMA_CMAKE_ARGS)
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2> /dev/null || echo 2)
# `make test-latest`: the newest versions pyproject.toml allows, in a venv of their own.
LATEST_VENV := .venv-latest
LATEST_PY   := $(LATEST_VENV)/bin/python

.PHONY: run test test-fast lint test-latest bench venv lock check-desktop clean dist app

run: $(STAMP) check-desktop
	$(PY) main.py

# The window needs a few system libraries pip cannot install (Qt's xcb platform plugin); say which
# are missing and how to install them, instead of Qt's plugin dump.
check-desktop: $(STAMP)
	$(PY) -m studio.ui.platform_check

# Everything: the linters, then every test (the slowest listed at the end).
test: lint
	QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 $(PY) -m pytest -q --durations=15

# The inner loop: every test but the slow lane (fuzzing, soak, pickle attacks, kill loops, process
# tests, training; tests/conftest.py lists it), spread over the cores by pytest-xdist (one torch
# thread per worker: more would only fight over the same cores).
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow" -n auto --durations=10

# ruff (lint and format), the layer contracts (.importlinter) and pyright: what pre-commit runs too.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pyright -p .

bench: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/studio bench

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# First the pip the lock names (the venv's own may be years older), then torch's locked CPU
	# build, then exactly the other locked versions, then the studio itself.
	$(PY) -m pip install "$$(grep '^pip==' $(LOCK))"
	$(PY) -m pip install -c $(LOCK) torch || $(PY) -m pip install -c $(LOCK) torch --extra-index-url $(TORCH_CPU_INDEX)
	$(PY) -m pip install -r $(LOCK)
	$(PY) -m pip install --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

# Regenerate the lock from pyproject.toml (after changing a dependency, or to move to newer
# releases on purpose): pip-tools resolves with pip, so it sees the CPU torch wheel pip sees.
lock: $(STAMP)
	CUSTOM_COMPILE_COMMAND="make lock" $(PY) -m piptools compile --quiet --allow-unsafe --extra dev \
	    --strip-extras --no-emit-index-url --no-emit-find-links -c requirements/torch-cpu.txt -o $(LOCK) pyproject.toml

# Drift seen on purpose: the newest allowed versions (torch kept at its CPU build), whole suite.
test-latest:
	test -x $(LATEST_PY) || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_PY) -m pip install --upgrade pip
	grep '^torch==' $(LOCK) > $(LATEST_VENV)/torch.txt
	$(LATEST_PY) -m pip install -c $(LATEST_VENV)/torch.txt torch || \
	    $(LATEST_PY) -m pip install -c $(LATEST_VENV)/torch.txt torch --extra-index-url $(TORCH_CPU_INDEX)
	$(LATEST_PY) -m pip install --upgrade --upgrade-strategy eager -c $(LATEST_VENV)/torch.txt -e '.[dev]'
	$(LATEST_PY) requirements/drift.py $(LOCK)
	QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 $(LATEST_PY) -m pytest -q

# The wheel and sdist, in dist/; the wheel carries the embedded models (studio/resources/). Built
# with the venv's own setuptools: an isolated build would first fetch setuptools from PyPI.
dist: $(STAMP)
	rm -f dist/studio-*.whl dist/studio-*.tar.gz
	$(PY) -m build --no-isolation --outdir dist .

# A standalone app folder, dist/app/studio/ (PyInstaller: packaging/README.md says why and how).
app: $(STAMP)
	$(PY) -m PyInstaller --noconfirm --clean --distpath dist/app --workpath build/pyinstaller packaging/studio.spec

clean:
	rm -rf $(VENV) $(LATEST_VENV) build *.egg-info
