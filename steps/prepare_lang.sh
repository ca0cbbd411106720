#!/usr/bin/env bash
# Usage: steps/prepare_lang.sh [options] <lexicon.txt> <lm-text> <lang-dir>       (--units lexicon)
#        steps/prepare_lang.sh --units char|bpe [options] <lm-text> <lang-dir>
# Writes tokens.txt, words.txt, lexicon*.txt, L_disambig.fst, G.arpa, G.fst, HLG.fst
# (and bpe.model for char/bpe units, trained on <lm-text>; --extra-lm-text adds sentences to the LM
# and words to the lexicon, not to the units: more LM text leaves models trained on the units valid).
set -euo pipefail
units=lexicon
vocab_size=500
lm_order=3
lm_prune_threshold=0
sil_token=
extra_lm_text=
help_message="Usage: $0 [--lm-order 3] [--lm-prune-threshold 0] [--sil-token SIL] [--extra-lm-text FILE] <lexicon.txt> <lm-text> <lang-dir>
       $0 --units char|bpe [--vocab-size 500] [--lm-order 3] [--lm-prune-threshold 0] [--extra-lm-text FILE] <lm-text> <lang-dir>"
. "$(dirname "$0")/../utils/parse_options.sh"
extra=()
[ -z "$extra_lm_text" ] || extra=(--extra-lm-text "$extra_lm_text")
if [ "$units" = lexicon ]; then
  [ $# -eq 3 ] || { echo "$help_message" 1>&2; exit 1; }
  speechtl prepare-lang --lexicon "$1" --lm-text "$2" --lang-dir "$3" \
    --lm-order "$lm_order" --lm-prune-threshold "$lm_prune_threshold" --sil-token "$sil_token" "${extra[@]}"
else
  [ $# -eq 2 ] || { echo "$help_message" 1>&2; exit 1; }
  speechtl prepare-lang --units "$units" --vocab-size "$vocab_size" --lm-text "$1" --lang-dir "$2" \
    --lm-order "$lm_order" --lm-prune-threshold "$lm_prune_threshold" "${extra[@]}"
fi
