# Two entry points: `make demo` and `make test`. Everything else is a helper target.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PERSONS ?= 5000
SEED ?= 42
DEMO_DIR := demo
PORT ?= 5006

.PHONY: demo test install build-demo serve lint bench clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "uv>=0.4"

$(VENV)/.installed: pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $@

install: $(VENV)/.installed

$(DEMO_DIR)/data_catalog.yaml: | $(VENV)/.installed
	$(BIN)/clinnova-explore build --persons $(PERSONS) --seed $(SEED) --out $(DEMO_DIR)

build-demo: $(DEMO_DIR)/data_catalog.yaml

demo: build-demo
	@echo ""
	@echo "Dashboards: http://127.0.0.1:$(PORT)/overview"
	@echo "JupyterLab on the same data (in another terminal):"
	@echo "    CLINNOVA_CATALOG=$(CURDIR)/$(DEMO_DIR)/data_catalog.yaml $(BIN)/jupyter lab notebooks/"
	@echo ""
	$(BIN)/clinnova-explore serve --catalog $(DEMO_DIR)/data_catalog.yaml --port $(PORT)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed
	$(BIN)/python bench/build.py
	$(BIN)/python bench/cohorts.py
	$(BIN)/python bench/survival.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
