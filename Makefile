# Two entry points a new user needs (see README.md): `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup serve test quirks bench-ws bench-cometql bench-sip fuzz clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

serve: setup
	$(BIN)/cometbench serve $(ARGS)

test: setup
	$(BIN)/pytest -q -p no:cacheprovider $(ARGS)

quirks: setup
	$(BIN)/cometbench quirks

bench-ws: setup
	$(BIN)/python tests/perf/bench_comet_ws.py

bench-cometql: setup
	$(BIN)/python tests/perf/bench_cometql.py

bench-sip: setup
	$(BIN)/python tests/perf/bench_sip.py

# about an hour: hypothesis fuzz tests in the long profile, the live-socket fuzzer, the mutation
# campaign (>= 1,000,000 inputs per protocol); ARGS="--live-minutes 5" etc. (tests/fuzz/run.py)
fuzz: setup
	$(BIN)/python -m tests.fuzz.run $(ARGS)

clean:
	rm -rf $(VENV) node_modules .hypothesis
