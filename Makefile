# The two commands of the README. Both install what they need first (utils/install.sh).
#   make demo [ARGS="--text-dir /abs/path/text"]   the default recipe (egs/tts_xling/ASR), end to end
#   make test [PYTEST_ARGS="-k fbank"]                      the test suite
SHELL := /bin/bash
VENV ?= .venv
DEMO_RECIPE ?= egs/tts_xling/ASR
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup demo test clean-demo

setup:
	@VENV=$(VENV) bash utils/install.sh

demo: setup
	cd $(DEMO_RECIPE) && PATH=$(CURDIR)/$(VENV)/bin:$$PATH ./run.sh $(ARGS)

test: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/python -m pytest -ra $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO_RECIPE)/data $(DEMO_RECIPE)/exp $(DEMO_RECIPE)/download
