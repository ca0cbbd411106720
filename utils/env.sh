#!/usr/bin/env bash
# Sourced by every recipe's path.sh: speechtl's .venv first on PATH, unbuffered UTF-8 Python.
# The checkout is found from this file's real location, so a recipe copied elsewhere
# (with its utils link) still finds it.
top=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
if [ -x "$top/.venv/bin/python" ]; then
  export PATH="$top/.venv/bin:$PATH"
fi
if ! command -v speechtl >/dev/null; then
  echo "speechtl is not installed: run 'make setup' (or 'make test') in $top first" 1>&2
  exit 1
fi
export PYTHONUNBUFFERED=1
export PYTHONIOENCODING=utf-8
