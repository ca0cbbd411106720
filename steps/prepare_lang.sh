#!/usr/bin/env bash
# Usage: steps/prepare_lang.sh [options] <lexicon.txt> <lm-text> <lang-dir>
# Writes tokens.txt, words.txt, lexicon*.txt, L_disambig.fst, G.arpa, G.fst, HLG.fst.
set -euo pipefail
lm_order=3
lm_prune_threshold=0
sil_token=
help_message="Usage: $0 [--lm-order 3] [--lm-prune-threshold 0] [--sil-token SIL] <lexicon.txt> <lm-text> <lang-dir>"
. "$(dirname "$0")/../utils/parse_options.sh"
[ $# -eq 3 ] || { echo "$help_message" 1>&2; exit 1; }
speechtl prepare-lang --lexicon "$1" --lm-text "$2" --lang-dir "$3" \
  --lm-order "$lm_order" --lm-prune-threshold "$lm_prune_threshold" --sil-token "$sil_token"
