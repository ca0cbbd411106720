#!/usr/bin/env bash
# Usage: steps/decode.sh [options] <checkpoint> <lang-dir> <test-cuts> <out-dir>
# Writes recogs-/errs-/wer-summary-<test-set>-<decoding>.txt, the per-utterance errors
# (utt-errs-<test-set>-<decoding>.tsv) and adds rows to --results (--seed: their seed column;
# by default the checkpoint's training seed).
set -euo pipefail
test_set="test"
decoding=greedy,hlg
method=  # empty: the method the checkpoint was trained with
data=    # empty: the amount in its exp/<method>_<amount> folder name, else all
results=
seed=
nj=1
cmd=local
help_message="Usage: $0 [--test-set test] [--decoding greedy,hlg] [--method M (default: the checkpoint's)] [--data D (default: from exp/<method>_<D>/, else all)] [--results exp/results.tsv] [--seed N] [--nj 1] [--cmd local] <checkpoint> <lang-dir> <test-cuts> <out-dir>"
. "$(dirname "$0")/../utils/parse_options.sh"
[ $# -eq 4 ] || { echo "$help_message" 1>&2; exit 1; }
extra=()
[ -n "$method" ] && extra+=(--method "$method")
[ -n "$data" ] && extra+=(--data "$data")
[ -n "$results" ] && extra+=(--results "$results")
[ -n "$seed" ] && extra+=(--seed "$seed")
speechtl decode --checkpoint "$1" --lang-dir "$2" --cuts "$3" --out-dir "$4" --test-set "$test_set" \
  --decoding "$decoding" --nj "$nj" --cmd "$cmd" "${extra[@]}"
