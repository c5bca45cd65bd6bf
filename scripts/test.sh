#!/usr/bin/env bash
# Set up, lint, and run the test suite.
source "$(dirname "$0")/env.sh"
ruff check .
python -m pytest -q "$@"
