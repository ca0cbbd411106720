#!/usr/bin/env bash
# Usage: steps/decode.sh [options] <checkpoint> <lang-dir> <test-cuts> <out-dir>
# Writes recogs-/errs-/wer-summary-<test-set>-<decoding>.txt, the per-utterance errors
# (utt-errs-<test-set>-<decoding>.tsv) and adds rows to --results (--seed: their seed column;
# by default the checkpoint's training seed).
# --epoch N --avg K (icefall's): decode the average of epoch-(N-K+1)..epoch-N.pt of the exp dir
# instead, <checkpoint> being that dir (or a checkpoint in it, e.g. exp/X/final.pt); its files end
# in -epoch-N-avg-K and its rows (checkpoint column epoch-N-avg-K) sit beside the final model's.
set -euo pipefail
test_set="test"
decoding=greedy,hlg
method=  # empty: the method the checkpoint was trained with
data=    # empty: the amount in its exp/<method>_<amount> folder name, else all
results=
seed=
epoch=   # empty: <checkpoint> itself; N: the average of the exp dir's epochs up to epoch-N.pt
avg=     # with --epoch: how many epochs (default 1)
nj=1
cmd=local
help_message="Usage: $0 [--test-set test] [--decoding greedy,hlg] [--method M (default: the checkpoint's)] [--data D (default: from exp/<method>_<D>/, else all)] [--results exp/results.tsv] [--seed N] [--epoch N --avg K (average epoch-(N-K+1)..epoch-N of the exp dir)] [--nj 1] [--cmd local] <checkpoint (with --epoch: the exp dir)> <lang-dir> <test-cuts> <out-dir>"
. "$(dirname "$0")/../utils/parse_options.sh"
[ $# -eq 4 ] || { echo "$help_message" 1>&2; exit 1; }
extra=()
[ -n "$method" ] && extra+=(--method "$method")
[ -n "$data" ] && extra+=(--data "$data")
[ -n "$results" ] && extra+=(--results "$results")
[ -n "$seed" ] && extra+=(--seed "$seed")
[ -n "$avg" ] && extra+=(--avg "$avg")  # without --epoch, speechtl decode says what is missing
model=(--checkpoint "$1")
if [ -n "$epoch" ]; then
  exp=$1
  [ -d "$exp" ] || exp=$(dirname "$1")  # a checkpoint of the exp dir: its dir
  model=(--exp-dir "$exp" --epoch "$epoch")
fi
speechtl decode "${model[@]}" --lang-dir "$2" --cuts "$3" --out-dir "$4" --test-set "$test_set" \
  --decoding "$decoding" --nj "$nj" --cmd "$cmd" "${extra[@]}"
