#!/usr/bin/env bash
# Usage: steps/loso.sh [options] <adapt-config> <lang-dir> "<pool-cuts>..." <data-dir> <exp-dir>
# Leave-one-speaker-out. Each speaker of the pool (every labelled cut manifest of the corpus,
# unioned) is held out in turn: the model adapts on the OTHER speakers' data (--shots N per
# speaker and transcript, --minutes M of them, or with neither all of it) and is scored on
# the held-out speaker, whom it never heard. That speaker's original recordings are split
# (speechtl holdout, seeded, per transcript when transcripts repeat) into disjoint parts:
#   test (--test-fraction, scored), dev (--dev-fraction, labelled, only for --tune), and the rest:
#   untranscribed audio (texts removed) for the unlabelled-audio methods (dann, mmd, coral,
#   reweight, speaker-adversarial, entropy, infomax, ssl, kd, pseudo-label, balanced-pseudo-label, vtln).
# --personal-shots "1 2 5": then N labelled shots per transcript of the held-out speaker's own,
# drawn from its untranscribed part, fine-tune the --personal-from system (personalization rows
# personal-finetune, data <N>shots; from another system M: rows M+personal-finetune, systems in
# <exp-dir>/<speaker>/personal_M/). --personal-method P trains P on the own shots instead (rows
# personal-P / M+personal-P); a taught P (pseudo-label, balanced-pseudo-label, kd) is taught by the
# --personal-from system itself and reads the held-out speaker's untranscribed part. With --seeds, each
# seed's personal systems start from that seed's --personal-from system; all seeds train in one call.
# --personal-method "finetune balanced-pseudo-label": a chain. The first trains as above; each next one
# starts from (and, taught, is taught by) the one before at the same shots and seed, its systems in
# <dir of the one before>/after_<method before>/, rows <prefix of the one before><method before>+<method>
# (e.g. round3-balanced-pseudo-label+personal-finetune+balanced-pseudo-label).
# --rounds N: iterated self-training of the taught methods among --methods (--round-methods to pick
# some): round r (2..N) of each is taught by its round r-1 student (steps/adapt_all.sh --rounds),
# systems in <exp-dir>/<speaker>/round<r>/, rows round<r>-<method>; --personal-from round<r>-<method>
# personalizes one of them.
# Parts: split (<data-dir>/<speaker>/, <data-dir>/cuts_{test,dev}_<speaker>.jsonl.gz), adapt
# (<exp-dir>/<speaker>/<method>_<N>shots[_s<seed>], <exp-dir>/<speaker>/personal/...), decode
# (rows test_<speaker>, dev_<speaker>, and pooled over the speakers: test_loso_mean,
# dev_loso_mean), or all. --tune: options chosen on all held-out speakers' dev parts together
# (steps/tune.sh, one fold per speaker; trials in <exp-dir>/sweep/<method>) into <exp-dir>/adapt_tuned.yaml, which adapt uses.
set -euo pipefail
steps=$(cd "$(dirname "$0")" && pwd)
. "$steps/../utils/common.sh"  # first: the defaults below read TAUGHT_METHODS
nj=2
part=all
speakers=
test_fraction=0.2
dev_fraction=0.1
split_seed=0
shots=0
minutes=0
methods="scratch finetune"
personal_shots=
personal_from=finetune
personal_method=finetune
rounds=1
round_methods=     # empty: every --taught method; only those among --methods have rounds
teacher=finetune   # of the --taught methods
teacher_exp=       # where the teacher systems are (<dir>/<speaker>/<teacher>_<amount>); empty: <exp-dir>
personalize=true   # false: split the own shots (--personal-shots) but train no personalized systems
seeds=
tune=
sweep_space=conf/loso_sweep.yaml
tune_trials=0
source_checkpoint=exp/source/final.pt
decoding=greedy,hlg
zero_shot_lang=
results=exp/results.tsv
taught=$TAUGHT_METHODS
key=
log_prefix=
method_prefix=
help_message="Usage: $0 [options] <adapt-config> <lang-dir> \"<pool-cuts>...\" <data-dir> <exp-dir>
  --part split|adapt|decode|all   --speakers 'a b' (default: every speaker of the pool)
  --test-fraction 0.2 --dev-fraction 0.1 --split-seed 0   the held-out speaker's parts
  --shots 5 | --minutes 10 (neither: all the others' data) --methods 'scratch finetune ...' --seeds '1 2 3'
  --taught '$TAUGHT_METHODS' --teacher finetune [--teacher-exp exp/loso_whisper]   (a teacher of another source)
  --personal-shots '1 2 5' --personal-from finetune [--personal-method finetune] [--personalize false]   own-shot personalization rows
  --rounds 3 [--round-methods balanced-pseudo-label]   taught methods again, each round taught by the last
  --tune 'finetune dann' --sweep-space conf/loso_sweep.yaml --tune-trials 0
  --source-checkpoint exp/source/final.pt --decoding greedy,hlg --zero-shot-lang LANG (adds zero-shot rows)
  --results exp/results.tsv --nj 2 --key 'what every run depends on' --log-prefix 'Stage 5'
  --method-prefix whisper-   rows of another source beside the own source's (e.g. --source-checkpoint whisper:PATH)"
. "$steps/../utils/parse_options.sh"
[ $# -eq 5 ] || { echo "$help_message" 1>&2; exit 1; }
config=$1 lang=$2 pool=$3 data=$4 exp=$5
# Personalized systems and their rows: personal/ and personal-finetune from finetune (the default),
# personal_M/ and M+personal-finetune from any other system M.
personal_dir=personal personal_prefix=personal-
if [ "$personal_from" != finetune ]; then personal_dir=personal_$personal_from personal_prefix="$personal_from+personal-"; fi
check_rounds "$rounds" "${round_methods:-$taught}" "$taught"
# The round methods that are among --methods (a recipe's default may name one a run leaves out).
wanted=${round_methods:-$taught} round_methods=
for m in $wanted; do case " $methods " in *" $m "*) round_methods+="${round_methods:+ }$m" ;; esac; done
[ -n "$round_methods" ] || rounds=1
# --personal-from round<r>-<method>: that round's student (<exp-dir>/<speaker>/round<r>/).
personal_round='' from_method=$personal_from
if [[ $personal_from =~ ^round([0-9]+)-(.+)$ ]]; then
  personal_round=${BASH_REMATCH[1]} from_method=${BASH_REMATCH[2]}
  if [[ " $round_methods " != *" $from_method "* ]] || [ "$personal_round" -lt 2 ] || [ "$personal_round" -gt "$rounds" ]; then
    log "ERROR: --personal-from $personal_from: no such round (--rounds $rounds, round methods: ${round_methods:-none}). Fix: a round 2..$rounds of one of them"
    exit 1
  fi
fi
case " $methods " in *" $from_method "*) ;; *)
  if [ -n "$personal_shots" ] && $personalize; then
    log "ERROR: --personal-from $personal_from is not among --methods ($methods). Fix: add it, or personalize from another"; exit 1
  fi ;;
esac
[ -n "$personal_method" ] || { log "ERROR: --personal-method is empty. Fix: finetune, or a chain such as 'finetune balanced-pseudo-label'"; exit 1; }
# personal_chain adapt|decode SPEAKER: the --personal-method chain for SPEAKER (see the top). A taught
# step learns from the system it starts from (adapt_all --teacher-checkpoint): the --personal-from
# system for the first step, the step before for the others.
personal_chain() {
  local action=$1 spk=$2
  local dir=$exp/$spk/$personal_dir prefix=${method_prefix}$personal_prefix
  local from=$exp/$spk/${personal_round:+round$personal_round/}${from_method}_$amount
  local prev='' m n start m_taught psys=() counts=()
  for m in $personal_method; do
    if [ -n "$prev" ]; then dir=$dir/after_$prev prefix=$prefix$prev+; fi
    m_taught=
    case " $taught " in *" $m "*) m_taught=$m ;; esac
    if [ "$action" = decode ]; then
      mapfile -t psys < <(system_names "$m" "$personal_shots" "$seeds" shots)
      "$steps/decode_all.sh" --nj "$nj" --exp-dir "$dir" --test-sets "test_$spk dev_$spk" --decoding "$decoding" \
        --results "$results" --method-prefix "$prefix" --log-prefix "${log_prefix:+$log_prefix: }personalized for $spk" \
        "$lang" "$data/cuts" "${psys[@]}"
    else
      # The first step: every shot count in one call, from the --personal-from system; a later
      # step: one call per shot count, from the step before at that count.
      counts=("$personal_shots")
      [ -z "$prev" ] || read -ra counts <<< "$personal_shots"
      for n in "${counts[@]}"; do
        start=$from
        [ -z "$prev" ] || start=$(dirname "$dir")/${prev}_${n}shots
        mapfile -t psys < <(system_names "$m" "$n" "$seeds" shots)
        "$steps/adapt_all.sh" --nj "$nj" --exp-dir "$dir" --source-checkpoint "$start@seed@/final.pt" \
          --taught "$m_taught" ${m_taught:+--teacher-checkpoint "$start@seed@/final.pt"} \
          --unlabelled-cuts "$data/$spk/unlabelled.jsonl.gz" --key "$(cat "$data/$spk/.done")" \
          --log-prefix "${log_prefix:+$log_prefix: }personalize for $spk from $start${seeds:+_s<seed>}" \
          "$conf" "$lang" "$data/$spk/own" "${psys[@]}"
      done
    fi
    prev=$m
  done
}
case $part in split|adapt|decode|all) ;; *) log "ERROR: --part is split, adapt, decode or all, not '$part'"; exit 1 ;; esac
for m in $tune; do
  case " $taught " in *" $m "*) log "ERROR: --tune $m: it is taught by $teacher's model, which exists only after adapt. Fix: leave it out of --tune"; exit 1 ;; esac
done
pool_args=()
for p in $pool; do
  [ -f "$p" ] || { log "ERROR: $p: no such cut manifest. Fix: run the fbank stage first"; exit 1; }
  pool_args+=(--cuts "$p")
done
[ -n "$speakers" ] || speakers=$(speechtl speakers "${pool_args[@]}")
n_spk=$(echo "$speakers" | wc -w)
[ "$n_spk" -ge 2 ] || { log "ERROR: leave-one-speaker-out needs at least 2 speakers; the pool has: $speakers"; exit 1; }
say() { log "${log_prefix:+$log_prefix: }$*"; }
split_key() {
  local m=
  [ "$minutes" = 0 ] || m=" minutes=$minutes"
  echo "${key:+$key }pool=$pool test=$test_fraction dev=$dev_fraction seed=$split_seed shots=$shots$m"
}
if [ "$shots" != 0 ] && [ "$minutes" != 0 ]; then log "ERROR: give --shots or --minutes, not both"; exit 1; fi
# The amount of the other speakers' data every system adapts on: its label is the rows' data column.
amount=all
[ "$shots" = 0 ] || amount=${shots}shots
[ "$minutes" = 0 ] || amount=${minutes}min
zero_data=0min
[ "$shots" = 0 ] || zero_data=0shots

# --- split: the held-out speaker's parts, and the shots --------------------------------------
if [ "$part" = split ] || [ "$part" = all ] || [ "$part" = adapt ]; then
  for spk in $speakers; do
    d=$data/$spk
    is_done "$d/.done" "$(split_key)" && continue
    say "hold out $spk: test ${test_fraction}, dev ${dev_fraction}, the rest untranscribed; $amount of the others -> $d"
    speechtl holdout "${pool_args[@]}" --speaker "$spk" --output-dir "$d" \
      --test-fraction "$test_fraction" --dev-fraction "$dev_fraction" --seed "$split_seed"
    case $amount in
      all) cp "$d/train.jsonl.gz" "$d/train_all.jsonl.gz" ;;
      *shots) speechtl subset --cuts "$d/train.jsonl.gz" --shots "$shots" --output "$d/train_$amount.jsonl.gz" ;;
      *) speechtl subset --cuts "$d/train.jsonl.gz" --minutes "$minutes" --output "$d/train_$amount.jsonl.gz" ;;
    esac
    cp "$d/test.jsonl.gz" "$data/cuts_test_$spk.jsonl.gz"
    cp "$d/dev.jsonl.gz" "$data/cuts_dev_$spk.jsonl.gz"
    mark_done "$d/.done" "$(split_key)"
  done
  # The own shots apart (their own marker): other --personal-shots redo no split, hence no system
  # but the personalized ones. They are labelled copies drawn from the untranscribed part.
  for spk in $speakers; do
    d=$data/$spk
    for n in $personal_shots; do
      is_done "$d/.own_${n}shots.done" "$(cat "$d/.done")" && continue
      speechtl subset --cuts "$d/own.jsonl.gz" --shots "$n" --output "$d/own_${n}shots.jsonl.gz"
      mark_done "$d/.own_${n}shots.done" "$(cat "$d/.done")"
    done
  done
fi

conf=$config
[ -n "$tune" ] && conf=$exp/adapt_tuned.yaml
mapfile -t systems < <(system_names "$methods" "$amount" "$seeds")

# --- adapt: tune on the dev parts, then every method for every held-out speaker ---------------
if [ "$part" = adapt ] || [ "$part" = all ]; then
  if [ -n "$tune" ]; then
    # one fold per held-out speaker: trained on the others' shots (and its untranscribed part), scored on its dev part
    trains=() devs=() unls=() tkey="$(split_key) trials=$tune_trials"
    for spk in $speakers; do
      trains+=("$data/$spk/train_$amount.jsonl.gz") devs+=("$data/cuts_dev_$spk.jsonl.gz") unls+=("$data/$spk/unlabelled.jsonl.gz")
      tkey+=" $(cat "$data/$spk/.done")"
    done
    "$steps/tune.sh" --nj "$nj" --methods "$tune" --trials "$tune_trials" --log-prefix "${log_prefix:+$log_prefix: }held-out speakers" \
      --key "$tkey" --source-checkpoint "$source_checkpoint" --unlabelled-cuts "${unls[*]}" \
      "$config" "$sweep_space" "$lang" "${trains[*]}" "${devs[*]}" "$exp/sweep" "$conf"
  fi
  # Systems of another source (whisper:..., hf:...) are keyed on it too: the split's key holds
  # only the own source's.
  src_key=
  [ "$source_checkpoint" = exp/source/final.pt ] || src_key=" src=$source_checkpoint"
  for spk in $speakers; do
    "$steps/adapt_all.sh" --nj "$nj" --exp-dir "$exp/$spk" --source-checkpoint "$source_checkpoint" \
      --unlabelled-cuts "$data/$spk/unlabelled.jsonl.gz" --taught "$taught" --teacher "$teacher" \
      ${teacher_exp:+--teacher-dir "$teacher_exp/$spk"} --rounds "$rounds" --round-methods "$round_methods" \
      --key "$(cat "$data/$spk/.done")$src_key" --log-prefix "${log_prefix:+$log_prefix: }held out $spk" \
      "$conf" "$lang" "$data/$spk/train" "${systems[@]}"
    { [ -n "$personal_shots" ] && $personalize; } || continue
    # Every seed's systems in one call (--nj at a time), each from its own seed's model (@seed@).
    personal_chain adapt "$spk"
  done
fi

# --- decode: every system on its held-out speaker's test and dev parts, then the pooled rows --
if [ "$part" = decode ] || [ "$part" = all ]; then
  test_sets=() dev_sets=()
  for spk in $speakers; do test_sets+=("test_$spk"); dev_sets+=("dev_$spk"); done
  if [ -n "$zero_shot_lang" ]; then
    "$steps/decode_all.sh" --nj "$nj" --source-dir "$(dirname "$source_checkpoint")" --test-sets "${test_sets[*]} ${dev_sets[*]}" \
      --decoding "$decoding" --results "$results" --zero-shot-lang "$zero_shot_lang" --zero-shot-data "$zero_data" \
      --key "$(split_key)" --log-prefix "${log_prefix:+$log_prefix: }zero-shot" "$lang" "$data/cuts" zero-shot
  fi
  for spk in $speakers; do
    "$steps/decode_all.sh" --nj "$nj" --exp-dir "$exp/$spk" --test-sets "test_$spk dev_$spk" --decoding "$decoding" \
      --results "$results" --method-prefix "$method_prefix" --log-prefix "${log_prefix:+$log_prefix: }held out $spk" \
      --rounds "$rounds" --round-methods "$round_methods" \
      "$lang" "$data/cuts" "${systems[@]}"
    { [ -n "$personal_shots" ] && $personalize; } || continue
    personal_chain decode "$spk"
  done
  speechtl pool-sets --results "$results" --sets "${test_sets[*]}" --name test_loso_mean
  speechtl pool-sets --results "$results" --sets "${dev_sets[*]}" --name dev_loso_mean
  say "leave-one-speaker-out over $n_spk speakers ($speakers): rows test_<speaker> and test_loso_mean in $results"
fi
