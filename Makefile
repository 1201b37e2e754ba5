VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint clean bench bench-quick chaos fuzz

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/bigmodel up

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q

bench: $(STAMP)  ## every benchmark in bench/ -> bench/results/latest.json and latest.md
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run

bench-quick: $(STAMP)  ## a tiny smoke run of every benchmark (results under var/)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run --quick --out var/bench-quick

chaos: $(STAMP)  ## the chaos test for minutes (make test runs a short slice of it)
	BIGMODEL_CHAOS_SECONDS=$${BIGMODEL_CHAOS_SECONDS:-300} BIGMODEL_CHAOS_SCALE=$${BIGMODEL_CHAOS_SCALE:-3} \
		TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -s --timeout 3600 tests/integration/test_chaos.py

fuzz: $(STAMP)  ## schemathesis with many examples per route (make test runs a few)
	BIGMODEL_FUZZ_EXAMPLES=$${BIGMODEL_FUZZ_EXAMPLES:-200} TF_CPP_MIN_LOG_LEVEL=2 \
		$(PY) -m pytest -q --timeout 3600 tests/integration/test_api_fuzz.py

lint: $(STAMP)
	$(VENV)/bin/ruff check bigmodel api workers tests bench

clean:
	rm -rf $(VENV) var
