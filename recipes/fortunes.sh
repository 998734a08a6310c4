#!/usr/bin/env bash
# Recipe fortunes: see recipes/README.md. Extra arguments go to `omnifuse recipe` (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/omnifuse recipe fortunes "$@"
