# The environment of this recipe: speechtl's .venv first on PATH.
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -x "$top/.venv/bin/python" ]; then
  export PATH="$top/.venv/bin:$PATH"
fi
if ! command -v speechtl >/dev/null; then
  echo "speechtl is not installed: run 'make setup' (or 'make test') in $top first" 1>&2
  exit 1
fi
export PYTHONUNBUFFERED=1
export PYTHONIOENCODING=utf-8
