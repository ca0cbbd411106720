#!/usr/bin/env bash
# Usage: steps/adapt_all.sh [options] <adapt-config> <lang-dir> <train-cuts-prefix> <system>...
# Adapts the source to every <system> = <method>_<amount> (e.g. finetune_5min): steps/train.sh
# --method <method> on <train-cuts-prefix>_<amount>.jsonl.gz into <exp-dir>/<system>, --nj runs
# at a time (logs: <exp-dir>/log/adapt.<system>.log). Methods in --taught run after the others,
# taught by --teacher at the same amount (teacher=<teacher-dir>/<teacher>_<amount>/final.pt; --teacher-dir
# defaults to <exp-dir>; another one lets a system of another source teach, e.g. Whisper this source).
# --teacher-checkpoint PATH: one model teaches every taught system instead (e.g. personalization:
# the speaker-independent model that the held-out speaker's own shots start from).
# An @seed@ in --source-checkpoint or --teacher-checkpoint is each system's seed suffix (_s<seed> of
# <method>_<amount>_s<seed>; empty without one): every seed starts from (is taught by) its own model,
# and all of them train in one call, --nj at a time. The start model's .done then joins each key.
# A system whose .done holds this run's key is skipped; one finished with another key is
# redone from scratch; an interrupted one resumes. The key: --key, what the config says for
# the system's method (speechtl conf-key: every section but methods, and its own), the system,
# and the teacher's own key.
# --rounds N (iterated self-training): the --round-methods systems (default: every --taught one)
# train again N-1 times, round r into <exp-dir>/round<r>/<system>, taught by round r-1's student
# of the same method and amount (round 1: <exp-dir>/<system>); a new round 1 redoes the later ones.
set -euo pipefail
steps=$(cd "$(dirname "$0")" && pwd)
. "$steps/../utils/common.sh"  # first: the defaults below read TAUGHT_METHODS
nj=2
exp_dir=exp
source_checkpoint=exp/source/final.pt
unlabelled_cuts=
key=
taught=$TAUGHT_METHODS
teacher=finetune
teacher_dir=
teacher_checkpoint=
rounds=1
round_methods=
log_prefix=
help_message="Usage: $0 [--nj 2] [--exp-dir exp] [--source-checkpoint exp/source/final.pt] [--unlabelled-cuts CUTS] [--key 'what the runs depend on'] [--taught '$TAUGHT_METHODS'] [--teacher finetune] [--teacher-dir DIR] [--teacher-checkpoint PATH] [--rounds 1] [--round-methods 'balanced-pseudo-label'] [--log-prefix 'Stage 5'] <adapt-config> <lang-dir> <train-cuts-prefix> <system>...
  <system>: <method>_<amount>, trained on <train-cuts-prefix>_<amount>.jsonl.gz into <exp-dir>/<system>;
            <method>_<amount>_s<seed>: the same with train option seed=<seed> (a recipe's --seeds)
  --key: what every run depends on beyond the config and the system (e.g. the source's .done)
  --source-checkpoint: the source model (empty: no source; every method then needs a 'model' section)
  --rounds N: the --round-methods systems (default: the --taught ones) N-1 more times, each round taught by the last"
. "$steps/../utils/parse_options.sh"
[ $# -ge 3 ] || { echo "$help_message" 1>&2; exit 1; }
config=$1 lang=$2 cuts=$3
shift 3

if [ -z "$teacher_dir$teacher_checkpoint" ]; then
  case " $taught " in *" $teacher "*)
    log "ERROR: --teacher $teacher is one of the --taught methods: in one exp dir it would teach itself. Fix: --teacher-dir DIR (e.g. a round-1 system there teaches)"; exit 1 ;;
  esac
fi

check_rounds "$rounds" "${round_methods:-$taught}" "$taught"

per_seed() {
  # per_seed PATH SYSTEM: PATH with @seed@ made SYSTEM's seed suffix.
  split_system "$2"
  echo "${1//@seed@/${sys_seed:+_s$sys_seed}}"
}

source_of() { per_seed "$source_checkpoint" "$1"; }

teacher_of() {
  # The teacher of a taught system: --teacher at its amount (and seed, for <method>_<amount>_s<seed>).
  split_system "$1"
  case " $taught " in *" $sys_method "*)
    if [ -n "$teacher_checkpoint" ]; then per_seed "$teacher_checkpoint" "$1"; return; fi
    echo "${teacher_dir:-$exp_dir}/${teacher}_${sys_data}${sys_seed:+_s$sys_seed}/final.pt" ;;
  esac
}

# speechtl conf-key of each method: the conf's sections it reads (not the other methods' options,
# nor comments). Once per method: every key of its systems below uses it.
declare -A conf_key=()
for s in "$@"; do
  split_system "$s"
  [ -n "${conf_key[$sys_method]:-}" ] || conf_key[$sys_method]=$(speechtl conf-key --config "$config" --method "$sys_method")
done

adapt_key() {
  local t k=$key
  t=$(teacher_of "$1")
  # a per-seed start model: its own .done says what this system starts from
  [[ $source_checkpoint != *@seed@* ]] || k="${k:+$k }from=$(cat "$(dirname "$(source_of "$1")")/.done" 2>/dev/null)"
  split_system "$1"
  echo "${k:+$k }${conf_key[$sys_method]} system=$1${t:+ teacher=$(cat "$(dirname "$t")/.done" 2>/dev/null)}"
}

adapt() {
  # adapt <method>_<amount>: one adaptation run, then its .done marker.
  local exp=$exp_dir/$1 t src
  t=$(teacher_of "$1")
  src=$(source_of "$1")
  reset_if_changed "$exp" "$(adapt_key "$1")"
  split_system "$1"
  "$steps/train.sh" --method "$sys_method" ${sys_seed:+--sets "seed=$sys_seed"} \
    ${src:+--source-checkpoint "$src"} \
    ${unlabelled_cuts:+--unlabelled-cuts "$unlabelled_cuts"} ${t:+--options "teacher=$t"} \
    "$config" "$lang" "${cuts}_${sys_data}.jsonl.gz" "$exp"
  mark_done "$exp/.done" "$(adapt_key "$1")"
}

if [[ $source_checkpoint == *@seed@* ]]; then  # every per-seed start model, before any training
  for s in "$@"; do
    src=$(source_of "$s")
    [ -f "$(dirname "$src")/.done" ] || { log "ERROR: $s starts from $src, which is not trained. Fix: train it first"; exit 1; }
  done
fi

for wave in first taught; do  # methods with a teacher wait for it
  todo=()
  for s in "$@"; do
    t=$(teacher_of "$s")
    if [ -n "$t" ]; then kind=taught; else kind=first; fi
    [ "$kind" = "$wave" ] || continue
    if [ -n "$t" ] && [ ! -f "$(dirname "$t")/.done" ]; then
      if [ -n "$teacher_checkpoint" ]; then
        log "ERROR: ${s%_*} is taught by $teacher_checkpoint, which is not trained (no $(dirname "$t")/.done). Fix: train it first"; exit 1
      fi
      if [ -n "$teacher_dir" ]; then
        log "ERROR: ${s%_*} is taught by $(dirname "$t"), which is not trained. Fix: train $teacher there first"; exit 1
      fi
      log "ERROR: ${s%_*} is taught by $(dirname "$t"): add $teacher to the methods"; exit 1
    fi
    is_done "$exp_dir/$s/.done" "$(adapt_key "$s")" || todo+=("$s")
  done
  if [ ${#todo[@]} -gt 0 ]; then
    log "${log_prefix:+$log_prefix: }adapt ${todo[*]} ($nj at a time; logs: $exp_dir/log/adapt.<system>.log)"
    run_parallel "$nj" "$exp_dir/log" adapt adapt "${todo[@]}"
  fi
done

# Rounds 2..N: each taught by the previous round's student of its own method (adapt_all once per
# method and round, so the usual keys chain them: a retrained round r-1 redoes round r).
prev=$exp_dir
for ((r = 2; r <= rounds; r++)); do
  for m in ${round_methods:-$taught}; do
    mapfile -t these < <(systems_of "$m" "$@")
    [ ${#these[@]} -gt 0 ] || continue
    "$steps/adapt_all.sh" --nj "$nj" --exp-dir "$exp_dir/round$r" --source-checkpoint "$source_checkpoint" \
      --unlabelled-cuts "$unlabelled_cuts" --key "$key" --taught "$m" --teacher "$m" --teacher-dir "$prev" \
      --log-prefix "${log_prefix:+$log_prefix: }round $r of $rounds, taught by $prev" "$config" "$lang" "$cuts" "${these[@]}"
  done
  prev=$exp_dir/round$r
done
