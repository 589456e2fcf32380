# qmac: the user's entry points.
#
#   make run     the main job (qmac run: configs/main-job.toml, W2A2 4x4x4 for the iCE40 UP5K with its
#                target defaults): generate, lint and check, co-simulate against the reference,
#                synthesize beside the plain array, print a report with each step's time
#   make test    the whole test suite (unit, property, co-simulation, lint, synthesis)
#   make tools   install the pinned open FPGA toolchain into .venv/ (done by run and test)
#   make bench   benchmarks (generation time, Verilator build time and simulation speed)
#   make example the digits example: train the float MLP and CNN, then qmac net quantize and sim at
#                W4A4 and W8A8 (examples/digits/README.md)
#
# Needs: Rust (cargo), python3 with venv, g++, make, perl. Tools are pinned in scripts/setup-tools.sh.

VENV ?= $(CURDIR)/.venv
export QMAC_VENV := $(VENV)
CARGO ?= cargo
STAMP := $(VENV)/.qmac-tools

.PHONY: run test tools bench clean example

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

DIGITS := build/digits
example: tools
	$(CARGO) build --release --quiet -p qmac
	$(VENV)/bin/python examples/digits/train.py -o $(DIGITS)
	for m in mlp-w4a4 mlp-w8a8 cnn-w4a4 cnn-w8a8; do \
	  target/release/qmac net quantize --model examples/digits/$$m.toml --weights $(DIGITS)/$${m%%-*}.npz \
	    --calib $(DIGITS)/train.npz -o $(DIGITS)/$$m && \
	  target/release/qmac net sim $(DIGITS)/$$m --data $(DIGITS)/test.npz || exit 1; \
	done

clean:
	rm -rf build target/qmac-tests
