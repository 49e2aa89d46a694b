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

# With PostgreSQL installed, PG_SITE runs on a private cluster under $(DEMO_DIR)/pg (reused by
# the next run; `$(BIN)/python tools/demo_postgres.py --stop` stops it); its URL lives only in
# the environment variable CLINNOVA_PG_<SITE>. Without PostgreSQL every site stays on DuckDB.
PG_SITE ?= homburg
PG_VAR := CLINNOVA_PG_$(shell echo $(PG_SITE) | tr a-z A-Z)

demo: build-demo
	@url=$$($(BIN)/python tools/demo_postgres.py --demo $(DEMO_DIR) --site $(PG_SITE)); \
	if [ -n "$$url" ]; then \
		catalog=$(CURDIR)/$(DEMO_DIR)/data_catalog_pg.yaml; env="$(PG_VAR)=$$url "; \
	else \
		catalog=$(CURDIR)/$(DEMO_DIR)/data_catalog.yaml; env=""; \
	fi; \
	echo ""; \
	echo "Dashboards: http://127.0.0.1:$(PORT)/overview"; \
	echo "JupyterLab on the same data (in another terminal):"; \
	echo "    $${env}CLINNOVA_CATALOG=$$catalog $(BIN)/jupyter lab notebooks/"; \
	echo ""; \
	export $(PG_VAR)="$$url"; \
	exec $(BIN)/clinnova-explore serve --catalog $$catalog --port $(PORT)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed
	$(BIN)/python bench/build.py
	$(BIN)/python bench/cohorts.py
	$(BIN)/python bench/survival.py
	$(BIN)/python bench/federated.py

clean:
	-$(BIN)/python tools/demo_postgres.py --demo $(DEMO_DIR) --stop
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
