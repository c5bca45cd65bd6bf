#!/usr/bin/env bash
# The README's test command: set up, lint, then the fast tests (those not marked `slow`).
#   bash scripts/test.sh [PYTEST ARGS]          setup, lint (ruff), fast tests
#   bash scripts/test.sh --slow [PYTEST ARGS]   setup, the slow tests only (fits, wheel builds, the long fuzz run,
#                                               Ray, Chromium, the README's examples, training); .ci/run runs both
# Each stage prints a line starting with "==" when it begins.
set -euo pipefail
SLOW=0
if [ "${1:-}" = "--slow" ]; then
  SLOW=1
  shift
fi
echo "== setup: .venv with the pinned packages (the first run installs them: a few minutes)"
source "$(dirname "$0")/env.sh"
if [ "$SLOW" = 1 ]; then
  echo "== slow tests (pytest -m slow)"
  MARK="slow"
else
  echo "== lint (ruff check .)"
  ruff check .
  echo "== fast tests (pytest -m 'not slow'; the slow ones: bash scripts/test.sh --slow)"
  MARK="not slow"
fi
rc=0
python -m pytest -q -m "$MARK" "$@" || rc=$?
# pytest's 5 is "no test collected": after arguments that select only tests of the other set, say so and pass;
# with no arguments it means the suite itself is broken, and fails.
if [ "$rc" = 5 ] && [ "$#" -gt 0 ]; then
  OTHER="bash scripts/test.sh --slow"
  [ "$SLOW" = 1 ] && OTHER="bash scripts/test.sh"
  echo "== no test here is in this set (-m '$MARK'); the other set: $OTHER $*"
  rc=0
fi
exit "$rc"
