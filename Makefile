# qmac: the user's entry points.
#
#   make run     the main job on the built-in default configuration: generate, lint and check,
#                co-simulate against the reference, synthesize, print a report
#   make test    the whole test suite (unit, property, co-simulation, lint, synthesis)
#   make tools   install the pinned open FPGA toolchain into .venv/ (done by run and test)
#   make bench   benchmarks (generation time, Verilator build time and simulation speed)
#
# Needs: Rust (cargo), python3 with venv, g++, make, perl. Tools are pinned in scripts/setup-tools.sh.

VENV ?= $(CURDIR)/.venv
export QMAC_VENV := $(VENV)
CARGO ?= cargo
STAMP := $(VENV)/.qmac-tools

.PHONY: run test tools bench clean

tools: $(STAMP)

$(STAMP): scripts/setup-tools.sh
	./scripts/setup-tools.sh

run: tools
	$(CARGO) run --release --quiet -p qmac -- run

test: tools
	$(CARGO) test --workspace --release

bench: tools
	$(CARGO) bench -p qmac
	$(CARGO) run --release --quiet -p qmac -- bench

clean:
	rm -rf build target/qmac-tests
