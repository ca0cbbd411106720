#!/usr/bin/env bash
# Usage: steps/decode_all.sh [options] <lang-dir> <test-cuts-prefix> <system>...
# Decodes every --test-sets set (<test-cuts-prefix>_<set>.jsonl.gz) with every <system>'s
# <exp-dir>/<system>/final.pt into <exp-dir>/<system>/decode (steps/decode.sh: recogs-, errs-,
# wer-summary-<set>-<decoding>.txt), --nj systems at a time, and adds its rows to --results
# (method <method>, data <amount> of <system> = <method>_<amount>). The system zero-shot is
# the source model itself (--source-dir/final.pt with --zero-shot-lang, its own units) into
# <source-dir>/decode_zero_shot. --method-prefix names rows of systems that share method names
# with others in the same results.tsv (e.g. whisper- for exp/whisper/finetune_5shots, personal-).
# --rounds N --round-methods M (steps/adapt_all.sh's rounds): also <exp-dir>/round<r>/<system> for the
# systems of M, r = 2..N, rows round<r>-<method>.
# A decode dir whose .done holds this run's key is skipped.
set -euo pipefail
nj=2
exp_dir=exp
test_sets="test"
decoding=greedy,hlg
results=exp/results.tsv
decode_nj=1
cmd=local
source_dir=exp/source
zero_shot_lang=
zero_shot_decoding=
zero_shot_data=0min
key=
log_prefix=
method_prefix=
rounds=1
round_methods=
help_message="Usage: $0 [--nj 2] [--exp-dir exp] [--test-sets test] [--decoding greedy,hlg] [--results exp/results.tsv] [--decode-nj 1] [--cmd local] [--source-dir exp/source] [--zero-shot-lang LANG] [--zero-shot-decoding greedy] [--zero-shot-data 0min] [--key 'what zero-shot depends on'] [--log-prefix 'Stage 6'] [--method-prefix whisper-] [--rounds 1 --round-methods M] <lang-dir> <test-cuts-prefix> <system>...
  <system>: <method>_<amount> (its model: <exp-dir>/<system>/final.pt), or zero-shot (the source model)
  --nj: systems decoded at a time; --decode-nj, --cmd: HLG search jobs within one decoding (steps/decode.sh)
  --key: what zero-shot decoding depends on beyond the source's .done (e.g. the test cuts' .done)
  --method-prefix: prepended to every row's method (zero-shot included): rows of another source or stage"
steps=$(cd "$(dirname "$0")" && pwd)
. "$steps/../utils/parse_options.sh"
. "$steps/../utils/common.sh"
[ $# -ge 2 ] || { echo "$help_message" 1>&2; exit 1; }
lang=$1 cuts=$2
shift 2
# Which methods have rounds is the caller's to say (steps/adapt_all.sh defaults them to its --taught).
check_rounds "$rounds" "" ""
if [ "$rounds" != 1 ] && [ -z "$round_methods" ]; then
  log "ERROR: --rounds $rounds needs --round-methods (the methods steps/adapt_all.sh trained rounds of)"; exit 1
fi
zero_shot_decoding=${zero_shot_decoding:-$decoding}

decode_dir() { if [ "$1" = zero-shot ]; then echo "$source_dir/decode_zero_shot"; else echo "$exp_dir/$1/decode"; fi; }
decode_key() {
  # The graph and the model decoded are part of it: a lang dir rebuilt (another LM) or a final.pt
  # re-averaged left the old rows in place, decoded with what was there before.
  if [ "$1" = zero-shot ]; then
    echo "$(cat "$source_dir/.done")${key:+ $key} decoding=$zero_shot_decoding test_sets=$test_sets" \
      "graph=$(stamp "$zero_shot_lang/HLG.fst") model=$(stamp "$source_dir/final.pt")"
  else
    echo "$(cat "$exp_dir/$1/.done") decoding=$decoding test_sets=$test_sets${method_prefix:+ prefix=$method_prefix}" \
      "graph=$(stamp "$lang/HLG.fst") model=$(stamp "$exp_dir/$1/final.pt")"
  fi
}

decode() {
  # decode <method>_<amount> | zero-shot: every test set, rows into --results, then the .done marker.
  split_system "$1"  # <method>_<amount>[_s<seed>]; the rows' seed comes from the checkpoint
  local ckpt=$exp_dir/$1/final.pt method=$method_prefix$sys_method data=$sys_data units=$lang dec=$decoding t
  if [ "$1" = zero-shot ]; then
    ckpt=$source_dir/final.pt method=${method_prefix}zero-shot data=$zero_shot_data units=$zero_shot_lang dec=$zero_shot_decoding
  fi
  for t in $test_sets; do
    "$steps/decode.sh" --nj "$decode_nj" --cmd "$cmd" --test-set "$t" --decoding "$dec" --method "$method" \
      --data "$data" --results "$results" "$ckpt" "$units" "${cuts}_$t.jsonl.gz" "$(decode_dir "$1")"
  done
  mark_done "$(decode_dir "$1")/.done" "$(decode_key "$1")"
}

todo=() untrained=()
for s in "$@"; do
  if [ "$s" = zero-shot ] && [ -z "$zero_shot_lang" ]; then
    log "ERROR: the zero-shot system needs --zero-shot-lang (the source's lang dir)"; exit 1
  fi
  # A system whose training did not finish has no .done: the others are decoded, it is named at the end.
  if [ "$s" = zero-shot ]; then trained=$source_dir/final.pt; else trained=$exp_dir/$s/.done; fi
  if [ ! -f "$trained" ]; then untrained+=("$s"); continue; fi
  is_done "$(decode_dir "$s")/.done" "$(decode_key "$s")" || todo+=("$s")
done
if [ ${#todo[@]} -gt 0 ]; then
  log "${log_prefix:+$log_prefix: }decode $test_sets with ${todo[*]} ($decoding${zero_shot_lang:+; zero-shot: $zero_shot_decoding, source units}; logs: $exp_dir/log/decode.<system>.log)"
  run_parallel "$nj" "$exp_dir/log" decode decode "${todo[@]}"
fi
if [ ${#untrained[@]} -gt 0 ]; then
  log "ERROR: not decoded, never trained to the end (no .done in $exp_dir/<system>/): ${untrained[*]}." \
    "Fix: run the stage that trains them (its log says why it stopped), or leave them out of --methods"
  exit 1
fi

for ((r = 2; r <= rounds; r++)); do
  these=()
  for m in $round_methods; do mapfile -t -O "${#these[@]}" these < <(systems_of "$m" "$@"); done
  [ ${#these[@]} -gt 0 ] || continue
  "$steps/decode_all.sh" --nj "$nj" --exp-dir "$exp_dir/round$r" --test-sets "$test_sets" --decoding "$decoding" \
    --results "$results" --decode-nj "$decode_nj" --cmd "$cmd" --method-prefix "${method_prefix}round$r-" \
    --log-prefix "${log_prefix:+$log_prefix: }round $r" "$lang" "$cuts" "${these[@]}"
done
