# The README's two commands: `make demo` and `make test`. Each creates .venv
# with the pinned requirements on first use (Python 3.11+ is all it needs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: demo test lint bench clean

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

demo: $(BIN)/.installed
	$(BIN)/snakemake --cores $(CORES)

# In CI (CI set, root, apt-get) the report-rendering test's browser and bcftools (the
# scored-VCF test) are installed too; elsewhere those tests skip and say so. The SLURM
# test installs its own packages the same way (tests/slurm/cluster.sh).
test: $(BIN)/.installed
	@if [ -n "$$CI" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v chromium >/dev/null; then \
		echo "CI: installing chromium for the report rendering test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@if [ -n "$$CI" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v bcftools >/dev/null; then \
		echo "CI: installing bcftools for the scored-VCF test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bcftools >/dev/null; \
	fi
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

# One table of throughput figures measured side by side (README, Benchmark).
bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench.py

lint: $(BIN)/.installed
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/

clean:
	rm -rf results logs .snakemake report.html
