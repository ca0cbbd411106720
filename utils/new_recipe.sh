#!/usr/bin/env bash
# Usage: utils/new_recipe.sh NAME --corpus KIND --corpus-dir DIR [--source CKPT] [--lm-text FILE]
#          [--methods M ...] [--minutes N ...] [--egs-dir DIR]
# Writes <egs-dir>/NAME/ASR/ (default: this checkout's egs/) for your corpus: speechtl new-recipe,
# whose --help lists every option. Relative paths are taken from where you run it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/utils/env.sh"
# --egs-dir DIR or --egs-dir=DIR given: as given; otherwise this checkout's egs/.
for arg in "$@"; do
  case $arg in --egs-dir | --egs-dir=*) exec speechtl new-recipe "$@" ;; esac
done
exec speechtl new-recipe "$@" --egs-dir "$top/egs"
