#!/usr/bin/env bash
# Usage: utils/new_recipe.sh NAME --corpus KIND --corpus-dir DIR [--source CKPT] [--lm-text FILE]
#          [--methods M ...] [--minutes N ...] [--egs-dir DIR]
# Writes <egs-dir>/NAME/ASR/ (default: this checkout's egs/) for your corpus: speechtl new-recipe,
# whose --help lists every option. Relative paths are taken from where you run it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/utils/env.sh"
case " $* " in
  *" --egs-dir "*) exec speechtl new-recipe "$@" ;;
  *) exec speechtl new-recipe "$@" --egs-dir "$top/egs" ;;
esac
