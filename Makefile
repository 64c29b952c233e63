# The README's contract: `make demo` runs the main job end to end, `make test` runs the tests.
# Both install what they need: the pinned .venv, the engine, the chromadb runtimes.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup runtimes test test-fast test-slow test-live lint demo demo-cli bench bench-million bench-transplant fuzz lock clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	# chroma-hnswlib from source: its wheel is built without AVX, the source build uses this CPU's
	# (the transplant's native index build is about 1.6x faster; the Dockerfile keeps the portable wheel)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-binary chroma-hnswlib -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

runtimes: setup
	$(BIN)/chroma-migrate runtime ensure --all

lint: setup
	$(BIN)/ruff check .

# The whole default suite (unit + integration on real chromadb runtimes), slow matrix excluded.
# Two pytest workers (one per core; a test file stays on one worker, so its module fixtures are built once);
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadfile
test: runtimes lint
	$(BIN)/python -m pytest -m "not slow" $(XDIST) --durations=50 $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

# Every supported source version to every target: thorough, too slow for every CI run.
test-slow: runtimes
	$(BIN)/python -m pytest -m slow $(XDIST) $(PYTEST_ARGS)

# The DAGs on a production-shaped Airflow (api-server, scheduler, dag-processor, triggerer, two Celery
# workers; PostgreSQL metadata, Redis broker) driven through its REST API. Needs PostgreSQL on
# 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379; the test says how to start them.
test-live: runtimes
	$(BIN)/python -m pytest -m live $(PYTEST_ARGS)

# The migration DAG end to end with the real Airflow on local stand-ins (moto, a folder for EFS).
demo: runtimes
	$(BIN)/python scripts/demo.py

# The engine alone through its CLI: inspect, probe, migrate and back.
demo-cli: runtimes
	$(BIN)/python scripts/demo_cli.py

bench: runtimes
	$(BIN)/python bench/bench_migrate.py $(BENCH_ARGS)

# A fuzz campaign over every file the reader and the CLI read, from each version's real database: the summary
# goes to .cache/fuzz/summary.{json,md}, findings to .cache/fuzz/findings/. FUZZ_ARGS: --cases N, --seconds S,
# --versions 0.4.24,1.5.9, --seed N, --oracle N (python -m chroma_migrate_testkit.fuzz --help).
fuzz: runtimes
	$(BIN)/python -m chroma_migrate_testkit.fuzz $(FUZZ_ARGS)

# 1,000,000 x 384 written by chromadb 1.0.20 (about an hour the first time, cached under .cache/bench/),
# upgraded to 1.5.9 against the copy-plus-open floor, plus the DAG's download and publish (outside CI).
# The transplant (issue 14) against the rebuild and the copy-plus-open floor, and the native index build
# against raw add(); BENCH_ARGS="--records 200000" for the larger size.
bench-transplant: runtimes
	$(BIN)/python bench/bench_transplant.py $(BENCH_ARGS)

bench-million: runtimes
	$(BIN)/python bench/bench_million.py $(BENCH_ARGS)

# Re-pin requirements.txt from requirements.in (needs the registry).
lock: setup
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements.in -o requirements.txt

clean:
	rm -rf $(VENV) .runtimes .cache .pytest_cache .ruff_cache .demo
