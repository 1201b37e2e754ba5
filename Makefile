VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint clean bench bench-quick bench-inference browser chaos fuzz

$(STAMP): pyproject.toml
	@echo "installing bigmodel and its dependencies into $(VENV) (TensorFlow is large: a few minutes the first time)"
	python3 -m venv $(VENV)
	$(PY) -m pip install --progress-bar on -e '.[cpu,dev]'
	@# PyTorch for the torch-backend tests only from a CPU wheel already on this disk (pip's find-links), never
	@# a download (PyPI's torch is a CUDA build of several GB); without it those tests skip and say why.
	@$(PY) -m pip install -q --no-index --no-deps 'torch==2.13.0' >/dev/null 2>&1 \
	  && $(PY) -m pip install -q 'torch==2.13.0' \
	  || echo "no CPU wheel of torch 2.13.0 on this disk: the torch-backend tests will be skipped"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## options pass through: make run ARGS="--port 8001 -v" (or PORT=8001)
	$(VENV)/bin/bigmodel up $(if $(PORT),--port $(PORT)) $(ARGS)

test: $(STAMP) browser  ## the unit suite runs beside the integration suite (one keeps the CPU busy, the other mostly waits)
	@mkdir -p var
	@TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -p no:cacheprovider tests/unit > var/unit-tests.log 2>&1 & unit=$$!; \
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q tests/integration; integration=$$?; \
	wait $$unit; units=$$?; echo "== tests/unit"; cat var/unit-tests.log; \
	exit $$(( integration || units ))

browser:  ## Debian's chromium for the dashboard tests: installed only when missing, skipped where it cannot be
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && { apt-get install -y -q chromium >/dev/null 2>&1 \
	       || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; } \
	  && echo "installed chromium for the dashboard tests"; } \
	|| echo "chromium is missing and cannot be installed here: the dashboard's browser tests will be skipped"

bench: $(STAMP)  ## every benchmark in bench/ -> bench/results/latest.json and latest.md
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run

bench-quick: $(STAMP)  ## a tiny smoke run of every benchmark (results under var/)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run --quick --out var/bench-quick

bench-inference: $(STAMP)  ## online inference against its baselines (a few minutes on 2 cores)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run --only inference --out var/bench-inference

chaos: $(STAMP)  ## the chaos test for minutes (make test runs a short slice of it)
	BIGMODEL_CHAOS_SECONDS=$${BIGMODEL_CHAOS_SECONDS:-300} BIGMODEL_CHAOS_SCALE=$${BIGMODEL_CHAOS_SCALE:-3} \
		TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -s --timeout 3600 tests/integration/test_chaos.py

fuzz: $(STAMP)  ## schemathesis with many examples per route (make test runs a few)
	BIGMODEL_FUZZ_EXAMPLES=$${BIGMODEL_FUZZ_EXAMPLES:-200} TF_CPP_MIN_LOG_LEVEL=2 \
		$(PY) -m pytest -q --timeout 3600 tests/integration/test_api_fuzz.py

lint: $(STAMP)  ## ruff, mypy, bandit over the code, pip-audit over the installed environment
	$(VENV)/bin/ruff check bigmodel api workers tests bench
	$(VENV)/bin/mypy bigmodel api workers
	$(PY) -m pip install -q -e '.[audit]'
	$(VENV)/bin/bandit -q -c pyproject.toml -r bigmodel api workers
	$(PY) .ci/audit.py

clean:
	rm -rf $(VENV) var
