VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint clean bench bench-quick bench-inference

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

bench-inference: $(STAMP)  ## online inference against its baselines (a few minutes on 2 cores)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run --only inference --out bench/results/inference

lint: $(STAMP)
	$(VENV)/bin/ruff check bigmodel api workers tests bench

clean:
	rm -rf $(VENV) var
