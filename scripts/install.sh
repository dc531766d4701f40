#!/usr/bin/env bash
# Install selinet-compress into a virtual environment (default .venv) on a fresh machine.
# Order matters: torch from the CPU wheel first (an unpinned torch pulls a multi-GB CUDA build),
# then the locked set, then onnx2tf with --no-deps (its metadata wants Python >= 3.12 and would
# downgrade tensorflow / numpy / onnx; it runs fine on 3.11), then the project itself.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$here/.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip() {
  # this machine's pip config lists optional local indexes; drop pip's noise about absent ones
  "$venv/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip install --quiet "torch==2.13.0"
pip install --quiet -r "$here/requirements/lock.txt"
pip install --quiet --no-deps --ignore-requires-python "onnx2tf==2.6.9"
pip install --quiet --no-deps --no-build-isolation -e "$here"
"$venv/bin/selinet-compress" --version
