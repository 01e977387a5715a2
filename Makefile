# Entry points for a fresh machine:
#   make demo  -> set up .venv and run the lesson side by side (minitensor vs tf.keras, gradients too), writing report/
#   make test  -> set up .venv and run the whole test suite
#   make test-thorough -> the same with Hypothesis's `thorough` profile (10x the examples, random)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-thorough setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e ".[all,test,peers]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m compare --gradients

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-thorough: $(STAMP)
	$(VENV)/bin/python -m pytest --hypothesis-profile thorough

clean:
	rm -rf $(VENV) report .pytest_cache .hypothesis
