#!/usr/bin/env bash
# Recipe emoji: see recipes/README.md; updates its section of docs/results.md. Extra arguments go to
# `omnifuse recipe` (e.g. --quick, which writes OUT/results.md instead).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/omnifuse recipe emoji --results-file docs/results.md "$@"
