# The two set-up commands of the README: `make demo` and `make test`. Both create .venv themselves.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/video-supervisor demo

lint: $(BIN)/.installed
	$(BIN)/ruff check supervisor workers tests bench

test: lint
	$(BIN)/pytest -q

bench: $(BIN)/.installed
	$(BIN)/python bench/scheduler.py
	$(BIN)/python bench/thermal.py

clean:
	rm -rf $(VENV) demo
