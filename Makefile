# Entry points for a new user (see README.md): `make run` (the scenario suite to a report) and
# `make test`.  Every target that runs something passes ARGS through, e.g. `make run ARGS="--seed 7"`,
# `make serve ARGS="--free-ports -v"`, `make test ARGS="tests/unit -x"`, `make bench-ws ARGS="--connections 1000"`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run serve lint test quirks journal bench-ws bench-cometql bench-sip bench-journal bench-actors bench-scenarios bench-browsers bench-media bench-calls bench-calls-process bench-reports bench-control-polling bench-shards fuzz clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# the scenario suite needs Python only (no node): the virtual environment is enough
run: $(VENV)/.installed
	$(BIN)/cometbench run $(ARGS)

serve: setup
	$(BIN)/cometbench serve $(ARGS)

# ruff and mypy (configured in pyproject.toml) over the repository, or over the files/folders in ARGS
lint: setup
	$(BIN)/ruff check $(ARGS)
	$(BIN)/mypy $(ARGS)

# the whole repository is linted first (so CI lints too), then the tests run (ARGS goes to pytest)
test: setup
	$(MAKE) --no-print-directory lint ARGS=
	$(BIN)/pytest -q -p no:cacheprovider $(ARGS)

quirks: setup
	$(BIN)/cometbench quirks $(ARGS)

journal: setup
	$(BIN)/cometbench journal $(ARGS)

bench-ws: setup
	$(BIN)/python tests/perf/bench_comet_ws.py $(ARGS)

bench-cometql: setup
	$(BIN)/python tests/perf/bench_cometql.py $(ARGS)

bench-sip: setup
	$(BIN)/python tests/perf/bench_sip.py $(ARGS)

bench-journal: setup
	$(BIN)/python tests/perf/bench_journal.py $(ARGS)

bench-actors: setup
	$(BIN)/python tests/perf/bench_actors.py $(ARGS)

bench-scenarios: setup
	$(BIN)/python tests/perf/bench_scenarios.py $(ARGS)

bench-browsers: setup
	$(BIN)/python tests/perf/bench_browsers.py $(ARGS)

bench-media: setup
	$(BIN)/python tests/perf/bench_real_media.py $(ARGS)
bench-shards: setup
	$(BIN)/python tests/perf/bench_shards.py $(ARGS)

bench-calls: setup
	$(BIN)/python tests/perf/bench_calls.py $(ARGS)

bench-calls-process: setup
	$(BIN)/python tests/perf/bench_calls_process.py $(ARGS)

# about an hour: hypothesis fuzz tests in the long profile, the live-socket fuzzer, the mutation
# campaign (>= 1,000,000 inputs per protocol); ARGS="--live-minutes 5" etc. (tests/fuzz/run.py)
fuzz: setup
	$(BIN)/python -m tests.fuzz.run $(ARGS)

bench-reports: setup
	$(BIN)/python tests/perf/bench_reports.py $(ARGS)

bench-control-polling: setup
	$(BIN)/python tests/perf/bench_control_polling.py $(ARGS)

clean:
	rm -rf $(VENV) node_modules .hypothesis build dist *.egg-info
