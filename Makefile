# The two set-up commands of the README: `make run` and `make test`.  Each creates the
# virtual environment it needs (in .venv) on first use; `make test` also installs the
# system D-Bus daemon (Debian package `dbus`) when it is missing and we are root.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/smallbms: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,gpio]'
	touch $@

run: $(BIN)/smallbms
	$(BIN)/smallbms run

test: $(BIN)/smallbms
	@command -v dbus-daemon >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dbus >/dev/null; \
	  else echo "dbus-daemon is missing: sudo apt-get install dbus" >&2; exit 1; fi; }
	$(BIN)/pytest -q

lint: $(BIN)/smallbms
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(BIN)/smallbms
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
