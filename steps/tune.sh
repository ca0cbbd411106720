#!/usr/bin/env bash
# Usage: steps/tune.sh [options] <adapt-config> <sweep-space> <lang-dir> <train-cuts> <dev-cuts> <exp-dir> <tuned-config>
# Options chosen on a dev set, never on test. For each --methods method, speechtl sweep trains
# every point of its grid in <sweep-space> (or --trials seeded random points) on <train-cuts>
# for <adapt-config>'s train.num_steps updates (the same budget for every method), decodes
# <dev-cuts> only, and writes the lowest-dev-WER point into <tuned-config> (a copy of
# <adapt-config> with the chosen options), which adaptation then trains with. --nj methods
# are swept at a time (logs: <exp-dir>/log/sweep.<method>.log; trials: <exp-dir>/<method>/).
# Folds: <train-cuts> and <dev-cuts> may each be K files (one quoted, space-separated argument), as may
# --unlabelled-cuts (or one file for all): the k-th of each form fold k, every candidate trains once per
# fold, and its dev WER is over all K dev sets (cross-validation, or one fold per held-out speaker).
# A method is swept again only when its own key changed: --key, its grid line, --trials, --train-seeds,
# the cuts, the source, and what it reads from <adapt-config> (speechtl conf-key: the train section and
# its own entry; comments and other methods' entries do not count). <tuned-config> is rebuilt from
# <adapt-config> on every run (speechtl tuned-conf), so an edit there reaches it at once; a method
# tuned once keeps its chosen options until its own entry or the train section changes.
set -euo pipefail
nj=2
methods=
trials=0
train_seeds=
dev_set=dev
decoding=greedy
source_checkpoint=exp/source/final.pt
unlabelled_cuts=
key=
log_prefix=
help_message="Usage: $0 [--methods 'finetune freeze'] [--trials 0] [--train-seeds '1 2'] [--nj 2] [--dev-set dev] [--decoding greedy]
  [--source-checkpoint exp/source/final.pt] [--unlabelled-cuts CUTS] [--key 'what the runs depend on'] [--log-prefix 'Stage 5']
  <adapt-config> <sweep-space> <lang-dir> <train-cuts> <dev-cuts> <exp-dir> <tuned-config>
  --trials: 0 sweeps every point of a method's grid; N: N seeded random points of it
  --train-seeds: every candidate trains once per seed, scored by its dev errors over all (empty: the conf's seed)
  <train-cuts> <dev-cuts> ('a b c' 'x y z'): K folds, the k-th of each together; --unlabelled-cuts: one, or K
  Methods that need a teacher (kd, pseudo-label) cannot be swept: it exists only after adaptation."
steps=$(cd "$(dirname "$0")" && pwd)
. "$steps/../utils/parse_options.sh"
. "$steps/../utils/common.sh"
[ $# -eq 7 ] || { echo "$help_message" 1>&2; exit 1; }
config=$1 space=$2 lang=$3 train=$4 dev=$5 exp=$6 tuned=$7
[ -n "$methods" ] || { echo "$0: no --methods to tune" 1>&2; exit 1; }
read -r -a trains <<< "$train"
read -r -a devs <<< "$dev"
read -r -a unls <<< "$unlabelled_cuts"
if [ ${#trains[@]} -ne ${#devs[@]} ] || { [ ${#unls[@]} -gt 1 ] && [ ${#unls[@]} -ne ${#trains[@]} ]; }; then
  log "ERROR: ${#trains[@]} train cuts, ${#devs[@]} dev cuts and ${#unls[@]} --unlabelled-cuts. Fix: one dev set (and one or no unlabelled set) per training set: the k-th of each form fold k"
  exit 1
fi
for f in "$config" "$space" "${trains[@]}" "${devs[@]}" "${unls[@]}"; do
  [ -f "$f" ] || { log "ERROR: $f does not exist. Fix: run the stages that make it first."; exit 1; }
done
folds=()
for k in "${!trains[@]}"; do
  folds+=(--train-cuts "${trains[$k]}" --dev-cuts "${devs[$k]}")
  [ ${#unls[@]} -eq 0 ] || folds+=(--unlabelled-cuts "${unls[$(( ${#unls[@]} > 1 ? k : 0 ))]}")
done
for m in $methods; do
  grep -q "^$m:" "$space" || { log "ERROR: $space has no search space for $m. Fix: add a line '$m: {train.lr: [...]}'"; exit 1; }
done

# A choice by HLG's dev WER depends on the graph too (size-mtime: another LM sweeps again); greedy's does not.
graph=
[[ "$decoding" != *hlg* ]] || graph=" graph=$(stamp "$lang/HLG.fst")"
method_key() {
  echo "${key:+$key }space=$(grep "^$1:" "$space") trials=$trials seeds=$train_seeds train=$train dev=$dev" \
    "unlabelled=$unlabelled_cuts src=$source_checkpoint decoding=$decoding tuned=$tuned" \
    "$(speechtl conf-key --config "$config" --method "$1")$graph"
}
# A choice is stale when its method's key changed: for --methods, any part of it (they are swept
# again below); for the other tuned methods, what they read from <adapt-config> (their options then
# fall back to its own, since nothing here sweeps them).
stale=()
if [ -f "$tuned" ]; then
  mapfile -t were_tuned < <(sed -n 's/^# sweep: \([^:]*\):.*/\1/p' "$tuned")
  for m in "${were_tuned[@]}"; do
    case " $methods " in
      *" $m "*) { [ -f "$exp/$m/.done" ] && same_key "$exp/$m/.done" "$(method_key "$m")"; } || stale+=("$m") ;;  # said below
      *) grep -qF "$(speechtl conf-key --config "$config" --method "$m" | cut -d' ' -f1)" "$exp/$m/.done" 2>/dev/null \
        || stale+=("$m") ;;  # its conf= digest (an init= stamp added since is no reason to drop the choice)
    esac
  done
fi
speechtl tuned-conf --config "$config" --output "$tuned" --drop "${stale[@]}"
todo=()
for m in $methods; do
  if is_done "$exp/$m/.done" "$(method_key "$m")" && grep -q "^# sweep: $m:" "$tuned"; then continue; fi
  todo+=("$m")
done
[ ${#todo[@]} -gt 0 ] || exit 0  # every method's options already chosen: nothing to say

tune_one() {
  speechtl sweep --config "$config" --method "$1" --space-file "$space" --trials "$trials" --lang-dir "$lang" \
    "${folds[@]}" --dev-set "$dev_set" --decoding "$decoding" ${source_checkpoint:+--source-checkpoint "$source_checkpoint"} \
    ${train_seeds:+--train-seeds $train_seeds} --exp-dir "$exp/$1" --output "$tuned"
  mark_done "$exp/$1/.done" "$(method_key "$1")"
}
log "${log_prefix:+$log_prefix: }tune ${todo[*]} on $dev_set$([ ${#trains[@]} -eq 1 ] || echo " of ${#trains[@]} folds") ($space, $nj at a time; logs: $exp/log/sweep.<method>.log) -> $tuned"
run_parallel "$nj" "$exp/log" sweep tune_one "${todo[@]}"
for m in "${todo[@]}"; do grep "^# sweep: $m:" "$tuned" | sed 's/^# sweep: /  /'; done
