#!/usr/bin/env bash
# Recipe speech: see recipes/README.md. Extra arguments go to `omnifuse recipe` (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/omnifuse recipe speech "$@"
