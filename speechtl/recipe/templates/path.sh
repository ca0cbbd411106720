# shellcheck shell=bash
# The environment of this recipe: speechtl's .venv first on PATH (see utils/env.sh).
. "$(dirname "${BASH_SOURCE[0]}")/utils/env.sh"
