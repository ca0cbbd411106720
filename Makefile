# The two commands of the README. Both install what they need first (utils/install.sh).
#   make demo [ARGS="--text-dir /abs/path/text"]   the default recipe (egs/tts_xling/ASR), end to end
#   make test [PYTEST_ARGS="-k fbank"]                      lint, then the test suite
#   make lint                                               ruff check, ruff format --check, shellcheck
SHELL := /bin/bash
VENV ?= .venv
DEMO_RECIPE ?= egs/tts_xling/ASR
ARGS ?=
PYTEST_ARGS ?=

# Python the linters read, and the shell scripts (recipe outputs and links left out).
PY_DIRS := speechtl tests bench local
SHELL_SCRIPTS = $(shell find egs steps utils -name '*.sh' -not -type l -not -path '*/data/*' -not -path '*/exp/*' -not -path '*/download/*' | sort)

.PHONY: setup demo test lint clean-demo

setup:
	@VENV=$(VENV) bash utils/install.sh

demo: setup
	cd $(DEMO_RECIPE) && PATH=$(CURDIR)/$(VENV)/bin:$$PATH SPEECHTL_INVOKED_FROM="$(CURDIR)" ./run.sh $(ARGS)

lint: setup
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)
	$(VENV)/bin/shellcheck -x $(SHELL_SCRIPTS)
	@echo "lint: ruff and shellcheck clean ($(words $(SHELL_SCRIPTS)) shell scripts)"

test: setup lint
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/python -m pytest -ra $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO_RECIPE)/data $(DEMO_RECIPE)/exp $(DEMO_RECIPE)/download
