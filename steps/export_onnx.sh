#!/usr/bin/env bash
# Usage: steps/export_onnx.sh [options] <checkpoint> <lang-dir> <test-cuts> <onnx-dir>
# Exports a CTC checkpoint for sherpa-onnx (model.onnx, model.int8.onnx, tokens.txt, words.txt,
# lexicon.txt, HLG.fst in <onnx-dir>), then decodes <test-cuts> from their audio through
# sherpa-onnx into <onnx-dir>/decode (recogs/errs/wer-summary per decoding; rows in --results).
set -euo pipefail
test_set="test"
decoding=onnx-greedy,onnx-hlg,onnx-int8-greedy,onnx-int8-hlg
method=  # empty: the method the checkpoint was trained with
data=    # empty: the amount in its exp/<method>_<amount> folder name, else all
results=
num_threads=1
help_message="Usage: $0 [--test-set test] [--decoding onnx-greedy,onnx-hlg,...] [--method M (default: the checkpoint's)] [--data D (default: from exp/<method>_<D>/, else all)] [--results exp/results.tsv] [--num-threads 1] <checkpoint> <lang-dir> <test-cuts> <onnx-dir>"
. "$(dirname "$0")/../utils/parse_options.sh"
. "$(dirname "$0")/../utils/common.sh"
[ $# -eq 4 ] || { echo "$help_message" 1>&2; exit 1; }
checkpoint=$1 lang_dir=$2 cuts=$3 onnx_dir=$4
extra=()
[ -n "$method" ] && extra+=(--method "$method")
[ -n "$data" ] && extra+=(--data "$data")
[ -n "$results" ] && extra+=(--results "$results")
log "export $checkpoint -> $onnx_dir"
speechtl export-onnx --checkpoint "$checkpoint" --lang-dir "$lang_dir" --out "$onnx_dir"
log "decode $cuts with sherpa-onnx ($decoding)"
speechtl decode --onnx "$onnx_dir" --cuts "$cuts" --out-dir "$onnx_dir/decode" --test-set "$test_set" \
  --decoding "$decoding" --num-threads "$num_threads" "${extra[@]}"
