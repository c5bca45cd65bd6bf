#!/usr/bin/env bash
# Create or reuse .venv and install aecodec with the pinned constraints, its test and ray extras (CI runs the
# Ray tests; `pip install .` alone stays without Ray). Sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AECODEC_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.aecodec-installed"
# Reinstall only when the pins, the project metadata or the compiled extension's source changed.
WANT="$(cat "$ROOT/constraints.txt" "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT"/codec/models/overfit/*.c | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$ROOT[test,ray]"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
