# The two commands a newcomer needs:  make up  (set up and run the whole system)  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test test-fast lint schemas clean

$(BIN)/leder: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

up: $(BIN)/leder  ## set up and run the whole system on the embedded stack (Ctrl-C stops it)
	$(BIN)/leder up

test: $(BIN)/leder  ## lint, type-check and run every test on a real PostgreSQL and broker
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder --durations=25

test-fast: $(BIN)/leder  ## unit tests, and the event store contract and handler tests on the in-memory store: no database, no broker, under a minute
	$(BIN)/python -m pytest tests/unit tests/integration/test_event_store.py -m "fast or not eventstore" -q

schemas: $(BIN)/leder  ## rewrite events/schemas/ after changing an event
	$(BIN)/leder schemas

clean:
	rm -rf $(VENV) .leder .pytest_cache .mypy_cache .ruff_cache
