#!/usr/bin/env bash
# Usage: steps/train.sh [options] <config.yaml> <lang-dir> <train-cuts> <exp-dir>
# Trains with speechtl's one Trainer; writes epoch-N.pt, avg-K.pt, final.pt, log/, tensorboard/.
set -euo pipefail
method=scratch
valid_cuts=
help_message="Usage: $0 [--method scratch] [--valid-cuts CUTS] <config.yaml> <lang-dir> <train-cuts> <exp-dir>"
. "$(dirname "$0")/../utils/parse_options.sh"
[ $# -eq 4 ] || { echo "$help_message" 1>&2; exit 1; }
extra=()
[ -n "$valid_cuts" ] && extra+=(--valid-cuts "$valid_cuts")
speechtl train --config "$1" --lang-dir "$2" --train-cuts "$3" --exp-dir "$4" --method "$method" "${extra[@]}"
