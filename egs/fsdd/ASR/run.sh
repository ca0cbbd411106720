#!/usr/bin/env bash
# fsdd: sim-to-real. A digit recognizer pretrained on synthetic speech (espeak-ng, flite,
# festival voices; conf/source_corpus.yaml) is adapted to real speakers of the Free Spoken
# Digit Dataset with a few labelled utterances per digit and speaker (--shots).
#   ./run.sh --corpus-dir /abs/path/fsdd/recordings    use a local copy (else download)
#   ./run.sh --shots "1 5" --methods "finetune freeze"  which amounts and methods
#   ./run.sh --train-speakers "george jackson" --test-speakers "lucas nicolas"   unseen speakers
#   ./run.sh --task "classify-digit classify-speaker" --stage 7   the classification heads only
#   ./run.sh --seeds "1 2 3"   every asr method x amount once per training seed (exp/<method>_<N>shots_s<seed>)
#   ./run.sh --tune "finetune dann"   first choose their options on the dev set (conf/sweep.yaml, steps/tune.sh)
#   ./run.sh --rounds 3 --methods "finetune balanced-pseudo-label"   self-training: each round's student teaches
#     the next (exp/round<r>/<method>_<N>shots, rows round<r>-<method>; dev rows too, to choose N on); the
#     --pretrained-methods' --round-methods too (exp/whisper/round<r>/..., rows whisper-round<r>-<method>)
#   ./run.sh --loso true --stage 5   leave-one-speaker-out: each speaker in turn is never heard in training
#     (steps/loso.sh; its untranscribed audio feeds the unlabelled-audio methods; rows test_<speaker>, test_loso_mean)
#   ./run.sh --stage 5 --pretrained whisper:/abs/whisper-tiny.en --methods ""   --pretrained-methods from a pretrained
#     model too (exp/whisper/<method>_<N>shots, rows whisper-<method>, whisper-zero-shot; --methods "": only those;
#     kd/pseudo-label taught by --pretrained-teacher; with --loso true: exp/loso_whisper/<speaker>/<method>_<N>shots)
#   ./run.sh --stage 5 --pretrained whisper:/abs/whisper-tiny.en --pretrained-methods lp-ft --pretrained-teacher lp-ft \
#     --pretrained-taught balanced-pseudo-label   our source's taught methods learn from Whisper's lp-ft instead
#     (exp/whisper_taught/<method>_<N>shots, rows whisper-taught-<method>, dev decoded too; --loso: exp/loso_whisper_taught)
#   ./run.sh --stage 5 --pretrained whisper:/abs/whisper-tiny.en --pretrained-methods lp-ft --pretrained-tune lp-ft
#     first choose those --pretrained-methods' options on dev (conf/sweep_whisper.yaml -> exp/whisper/adapt_tuned.yaml)
# Default split: FSDD's official one (recordings 0-4 of every speaker test, 5-49 train). Of the
#   training recordings the shots leave, the last --dev-shots per digit and speaker are dev (for --tune)
#   and the others untranscribed audio for the unlabelled-audio methods (dann, mmd, kd, pseudo-label...).
# Stages: 0 download, 1 manifests + synthesize the source, 2 fbank + shot subsets, 3 lang
#   (one unit per digit word, digit-loop G, HLG), 4 source pretrain, 5 adapt (asr),
#   6 decode (zero-shot, target-only, adapted; results.tsv, RESULTS.md, plot),
#   7 classification heads on the source encoder (exp/classify.tsv, confusion PNGs).
set -euo pipefail
invoked_from=${SPEECHTL_INVOKED_FROM:-$PWD}  # relative --corpus-dir/--text-dir: also read from here
cd "$(dirname "$0")"

stage=0
stop_stage=100
nj=2
source_procs=2
corpus_dir=
train_speakers=          # empty: every speaker (official split)
test_speakers=
shots="1 2 5"
speed_perturb="0.9 1.1"  # extra copies of the real training utterances (Kaldi's 3-way perturbation)
# scratch is the target-only baseline (source architecture, random init).
methods="scratch finetune freeze layerwise-lr"
# every method of the registry: scratch finetune freeze linear-probe layerwise-lr adapter lora reptile fomaml
#   dann mmd coral reweight speaker-adversarial entropy infomax ssl kd pseudo-label balanced-pseudo-label vtln
dev_shots=5    # dev recordings per digit and training speaker, outside every shot subset
tune=          # methods whose options stage 5 first chooses on dev (conf/sweep.yaml; not kd, pseudo-label)
tune_trials=0  # 0: every point of a method's grid; N: N seeded random points
tune_decoding=greedy  # the dev WER that --tune and --pretrained-tune choose by: greedy, or hlg (what RESULTS.md reports)
rounds=1       # self-training rounds of --round-methods (taught methods among --methods); 1: none
round_methods=balanced-pseudo-label
task="asr classify-digit classify-speaker"
classify_methods="scratch linear-probe finetune"
decoding=greedy,hlg
seeds=  # empty: one run per system, the seed of conf/adapt.yaml
# Leave-one-speaker-out (--loso true replaces stages 5-6's official split): per held-out speaker,
# 20% of its recordings are test, 10% dev (labelled: only for --loso-tune), 70% untranscribed.
loso=false
loso_shots=5             # labelled shots per digit of each training speaker
loso_methods="scratch finetune dann mmd coral reweight speaker-adversarial entropy infomax ssl kd pseudo-label balanced-pseudo-label"
# Iterated self-training: balanced-pseudo-label's student labels the untranscribed audio again and a new
# student learns from those labels, --loso-rounds in all (rows round<r>-balanced-pseudo-label; 3 chosen on
# the dev parts, RESULTS.md). 1: no extra rounds.
loso_rounds=3
loso_round_methods=balanced-pseudo-label
personal_shots="1 2 5"   # then the held-out speaker's own labelled shots on top of finetune (personalization)
personal_from=finetune   # ...or on top of another --loso-methods system (rows <it>+personal-finetune; round3-balanced-pseudo-label: a round's)
personal_method=finetune # what trains on the own shots; balanced-pseudo-label: taught by --personal-from, with the speaker's untranscribed audio;
#   a chain, e.g. "finetune balanced-pseudo-label": each step starts from and is taught by the one before (steps/loso.sh)
loso_tune=               # methods whose options are chosen on the held-out speakers' dev parts (conf/loso_sweep.yaml)
loso_speakers=           # empty: every speaker of the corpus is held out in turn
# A pretrained source beside exp/source (stages 5-6): whisper:PATH_OR_ID or hf:PATH_OR_ID (relative paths: to
# this directory). Its systems: exp/<whisper|hf>/<method>_<N>shots[_s<seed>], the same --shots and --seeds, rows
# <whisper|hf>-<method>; the source's own decoder adds <whisper|hf>-zero-shot (0shots: Whisper's, or an hf:
# model's CTC head if it was fine-tuned with one). With --loso true, on the same
# folds as the own source: exp/loso_<whisper|hf>/<speaker>/..., rows <whisper|hf>-<method> per held-out speaker.
pretrained=
pretrained_methods="finetune freeze"
pretrained_config=conf/adapt_whisper.yaml
pretrained_teacher=finetune         # teaches the taught --pretrained-methods (kd, pseudo-label, balanced-pseudo-label; e.g. lp-ft)
pretrained_personal_from=           # --loso: personalize this --pretrained-methods system too (--personal-shots)
# Own-source taught methods (kd, pseudo-label, balanced-pseudo-label) whose teacher is the pretrained source's
# --pretrained-teacher system of the same amount and seed (a better teacher for a small student):
# exp/<whisper|hf>_taught/<method>_<N>shots[_s<seed>] (--loso: exp/loso_<whisper|hf>_taught/<speaker>/...),
# rows <whisper|hf>-taught-<method>.
pretrained_taught=
pretrained_tune=    # --pretrained-methods whose options stage 5 first chooses on dev (conf/sweep_whisper.yaml)
pretrained_tune_seeds=  # every --pretrained-tune candidate trains once per seed, scored over all (empty: the conf's seed)
help_message=$(sed -n '2,30p' run.sh | sed 's/^# \{0,1\}//')

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/common.sh
check_rounds "$rounds" "$round_methods" "$TAUGHT_METHODS"  # before any stage runs
needs_pretrained --pretrained-tune "$pretrained_tune"
if [ -n "$pretrained_tune" ]; then
  ! $loso || { log "ERROR: --pretrained-tune chooses on the official split's dev set. Fix: tune without --loso true first, then run --loso true with --pretrained-config exp/${pretrained%%:*}/adapt_tuned.yaml"; exit 1; }
fi

dl_dir=download
manifests=data/manifests
fbank=data/fbank
lang=data/lang
cuts=$fbank/fsdd_cuts
src_cuts=$fbank/tts_digits_cuts
has_task() { case " $task " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

corpus_or_download corpus_dir $dl_dir/fsdd/recordings fsdd fsdd "FSDD"

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  key="corpus_dir=$corpus_dir train=$train_speakers test=$test_speakers"
  if ! is_done $manifests/.fsdd.done "$key"; then
    log "Stage 1: FSDD manifests from $corpus_dir (train speakers: ${train_speakers:-all}; test speakers: ${test_speakers:-all})"
    # shellcheck disable=SC2086
    speechtl prepare fsdd --corpus-dir "$corpus_dir" --output-dir $manifests \
      ${train_speakers:+--train-speakers $train_speakers} ${test_speakers:+--test-speakers $test_speakers}
    mark_done $manifests/.fsdd.done "$key"
  fi
  key="$(cksum < conf/source_corpus.yaml)"
  if ! is_done $manifests/.source.done "$key"; then
    log "Stage 1: synthesize the source digit strings (conf/source_corpus.yaml, nj=$nj)"
    speechtl prepare tts_digits --output-dir $manifests --config conf/source_corpus.yaml --nj $nj --cmd "$cmd"
    mark_done $manifests/.source.done "$key"
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  key="$(cat $manifests/.source.done)"
  if ! is_done $fbank/.source.done "$key"; then
    log "Stage 2: fbank of the synthetic source (40 bins, 8 kHz, nj=$nj)"
    steps/compute_fbank.sh --nj $nj --cmd "$cmd" --prefix tts_digits --splits "source_train source_dev" \
      --sampling-rate 8000 --num-mel-bins 40 $manifests $fbank
    mark_done $fbank/.source.done "$key"
  fi
  key="$(cat $manifests/.fsdd.done) shots=$shots speed_perturb=$speed_perturb"
  if ! is_done $fbank/.fsdd.done "$key"; then
    log "Stage 2: fbank of FSDD (real train speed perturbation: ${speed_perturb:-none}); subsets of $shots shot(s) per digit and training speaker"
    steps/compute_fbank.sh --nj $nj --cmd "$cmd" --prefix fsdd --splits "train test" \
      --sampling-rate 8000 --num-mel-bins 40 --speed-perturb "$speed_perturb" $manifests $fbank
    for n in $shots; do
      speechtl subset --cuts ${cuts}_train.jsonl.gz --shots "$n" --output "${cuts}_train_${n}shots.jsonl.gz"
    done
    mark_done $fbank/.fsdd.done "$key"
  fi
  # shellcheck disable=SC2086
  most=$(printf '%s\n' $shots | sort -n | tail -1)
  key="$(cat $fbank/.fsdd.done) labelled_shots=$most dev_shots=$dev_shots"
  if ! is_done $fbank/.rest.done "$key"; then
    log "Stage 2: what $most shot(s) leave of the training recordings: $dev_shots per digit and speaker dev, the rest untranscribed"
    speechtl rest-split --cuts ${cuts}_train.jsonl.gz --labelled-shots "$most" --dev-shots "$dev_shots" \
      --dev-output ${cuts}_dev.jsonl.gz --unlabelled-output ${cuts}_unlabelled.jsonl.gz
    mark_done $fbank/.rest.done "$key"
  fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  key="$(cat $manifests/.source.done)"
  if ! is_done data/.lang.done "$key"; then
    log "Stage 3: one unit per digit word; a digit-loop G (unigram of the source strings) and HLG"
    local/fsdd_prepare_dict.py $manifests/source_train_text.txt data/local/dict
    steps/prepare_lang.sh --lm-order 1 data/local/dict/lexicon.txt data/local/dict/lm_train.txt $lang
    mark_done data/.lang.done "$key"
  fi
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  key="$(cat $fbank/.source.done) $(units_key $lang data/.lang.done) $(cksum < conf/source.yaml) procs=$source_procs"
  if ! is_done exp/source/.done "$key"; then
    reset_if_changed exp/source "$key"
    log "Stage 4: source pretraining on synthetic digit strings (conf/source.yaml, $source_procs process(es))"
    steps/train.sh --num-procs $source_procs --method scratch --valid-cuts ${src_cuts}_source_dev.jsonl.gz \
      conf/source.yaml $lang ${src_cuts}_source_train.jsonl.gz exp/source
    mark_done exp/source/.done "$key"
  fi
fi

mapfile -t systems < <(system_names "$methods" "$shots" "$seeds" shots)

pt_systems=()
pretrained_source  # utils/common.sh: pt_kind, pt_exp; a local path made absolute
[ -z "$pretrained" ] || mapfile -t pt_systems < <(system_names "$pretrained_methods" "$shots" "$seeds" shots)
ptt_systems=()
if [ -n "$pretrained_taught" ]; then
  [ -n "$pretrained" ] || { log "ERROR: --pretrained-taught $pretrained_taught needs --pretrained: its --pretrained-teacher system teaches"; exit 1; }
  for m in $pretrained_taught; do
    case " $TAUGHT_METHODS " in *" $m "*) ;; *)
      log "ERROR: --pretrained-taught $m: not a taught method. Fix: one of $TAUGHT_METHODS"; exit 1 ;;
    esac
  done
  case " $pretrained_methods " in *" $pretrained_teacher "*) ;; *)
    log "ERROR: --pretrained-taught: its teacher $pretrained_teacher is not among --pretrained-methods ($pretrained_methods). Fix: add it"; exit 1 ;;
  esac
  mapfile -t ptt_systems < <(system_names "$pretrained_taught" "$shots" "$seeds" shots)
fi
pt_key="$(cat $fbank/.fsdd.done 2>/dev/null || true) $(source_key "$pretrained")"
# Its systems on the official split also read the untranscribed rest (kd, pseudo-label...): its key too.
pt_adapt_key="$(cat $fbank/.rest.done 2>/dev/null || true) $(source_key "$pretrained")"

# What every leave-one-speaker-out call shares: the folds, the shots of the other speakers, seeds, decoding.
loso_common=(--nj "$nj" --speakers "$loso_speakers" --shots "$loso_shots" --seeds "$seeds" --decoding "$decoding"
  --personal-shots "$personal_shots")
loso_opts=("${loso_common[@]}" --methods "$loso_methods" --personal-from "$personal_from" --personal-method "$personal_method"
  --rounds "$loso_rounds" --round-methods "$loso_round_methods" --tune "$loso_tune" --sweep-space conf/loso_sweep.yaml
  --zero-shot-lang "$lang")
# The pretrained source on the same folds (the same split key: the held-out parts are shared).
pt_loso_opts=("${loso_common[@]}" --methods "$pretrained_methods" --personal-from "${pretrained_personal_from:-finetune}"
  --personalize "$([ -n "$pretrained_personal_from" ] && echo true || echo false)"
  --teacher "$pretrained_teacher" --source-checkpoint "$pretrained" --method-prefix "$pt_kind-")
# The own source's --pretrained-taught methods, taught by the pretrained source's systems of the same folds.
ptt_loso_opts=("${loso_common[@]}" --methods "$pretrained_taught" --personalize false
  --teacher "$pretrained_teacher" --teacher-exp "exp/loso_$pt_kind" --rounds "$loso_rounds" --round-methods "$loso_round_methods"
  --method-prefix "$pt_kind-taught-")
loso_pool="${cuts}_train.jsonl.gz ${cuts}_test.jsonl.gz"
# One part (adapt or decode) of every fold, for the own source and then the pretrained one.
loso_part() {
  local key
  key="$(cat exp/source/.done) $(cat $fbank/.fsdd.done)"
  steps/loso.sh "${loso_opts[@]}" --part "$1" --log-prefix "$2" --key "$key" conf/adapt.yaml $lang "$loso_pool" data/loso exp/loso
  if [ -n "$pretrained" ]; then
    steps/loso.sh "${pt_loso_opts[@]}" --part "$1" --log-prefix "$2: $pt_kind" --key "$key" \
      "$pretrained_config" $lang "$loso_pool" data/loso "exp/loso_$pt_kind"
  fi
  if [ -n "$pretrained_taught" ]; then
    steps/loso.sh "${ptt_loso_opts[@]}" --part "$1" --log-prefix "$2: taught by $pt_kind $pretrained_teacher" --key "$key" \
      conf/adapt.yaml $lang "$loso_pool" data/loso "exp/loso_${pt_kind}_taught"
  fi
}
if $loso && has_task asr && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  loso_part adapt "Stage 5"
fi
if $loso && has_task asr && [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  loso_part decode "Stage 6"
  steps/report.sh --title "fsdd: synthetic digits -> real speakers" --plot exp/plots/data_efficiency.png \
    --test-set test_loso_mean --decoding hlg exp/results.tsv exp/RESULTS.md
fi

adapt_conf=conf/adapt.yaml
[ -n "$tune" ] && adapt_conf=exp/adapt_tuned.yaml
# shellcheck disable=SC2086
fewest=$(printf '%s\n' $shots | sort -n | head -1)  # what --tune and --pretrained-tune choose on
if ! $loso && has_task asr && [ -n "$tune" ] && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  # Options chosen on dev, never on test: each --tune method's grid at the smallest amount,
  # train.num_steps updates per candidate (the same budget as every method); the choice -> $adapt_conf.
  steps/tune.sh --nj $nj --decoding "$tune_decoding" --methods "$tune" --trials $tune_trials --log-prefix "Stage 5" \
    --key "$(cat exp/source/.done) $(cat $fbank/.rest.done)" --unlabelled-cuts ${cuts}_unlabelled.jsonl.gz \
    conf/adapt.yaml conf/sweep.yaml $lang "${cuts}_train_${fewest}shots.jsonl.gz" ${cuts}_dev.jsonl.gz \
    exp/sweep "$adapt_conf"
fi

if [ -n "$pretrained_tune" ]; then
  pt_tuned=$pt_exp/adapt_tuned.yaml
  if has_task asr && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
    # As --tune, from the pretrained model: each method's grid at the fewest shots, decoded on dev
    # only, the same train.num_steps per candidate; the choice -> $pt_tuned.
    steps/tune.sh --nj $nj --decoding "$tune_decoding" --methods "$pretrained_tune" --train-seeds "$pretrained_tune_seeds" \
      --log-prefix "Stage 5: $pt_kind" --source-checkpoint "$pretrained" \
      --key "$pt_adapt_key" --unlabelled-cuts ${cuts}_unlabelled.jsonl.gz "$pretrained_config" conf/sweep_whisper.yaml \
      $lang "${cuts}_train_${fewest}shots.jsonl.gz" ${cuts}_dev.jsonl.gz "$pt_exp/sweep" "$pt_tuned"
  fi
  pretrained_config=$pt_tuned
fi

if ! $loso && has_task asr && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  steps/adapt_all.sh --nj $nj --log-prefix "Stage 5" --key "$(cat exp/source/.done) $(cat $fbank/.rest.done)" \
    --rounds $rounds --round-methods "$round_methods" --unlabelled-cuts ${cuts}_unlabelled.jsonl.gz \
    "$adapt_conf" $lang ${cuts}_train "${systems[@]}"
fi

if ! $loso && has_task asr && [ -n "$pretrained" ] && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  steps/adapt_all.sh --nj $nj --exp-dir "$pt_exp" --source-checkpoint "$pretrained" --log-prefix "Stage 5" \
    --key "$pt_adapt_key" --teacher "$pretrained_teacher" --unlabelled-cuts ${cuts}_unlabelled.jsonl.gz \
    --rounds $rounds --round-methods "$round_methods" "$pretrained_config" $lang ${cuts}_train "${pt_systems[@]}"
fi

if ! $loso && has_task asr && [ ${#ptt_systems[@]} -gt 0 ] && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  steps/adapt_all.sh --nj $nj --exp-dir "${pt_exp}_taught" --teacher "$pretrained_teacher" --teacher-dir "$pt_exp" \
    --log-prefix "Stage 5: taught by $pt_kind $pretrained_teacher" --key "$(cat exp/source/.done) $(cat $fbank/.rest.done)" \
    --unlabelled-cuts ${cuts}_unlabelled.jsonl.gz "$adapt_conf" $lang ${cuts}_train "${ptt_systems[@]}"
fi

# With rounds, dev too (both sources): the number of rounds is chosen on dev's rows, never on test's.
# With a second teacher (--pretrained-taught) too: which teacher is chosen on dev.
dec_sets="test"
[ "$rounds" = 1 ] && [ -z "$pretrained_taught" ] || dec_sets="dev test"
if ! $loso && has_task asr && [ -n "$pretrained" ] && [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  steps/decode_all.sh --nj $nj --exp-dir "$pt_exp" --method-prefix "$pt_kind-" --log-prefix "Stage 6" \
    --test-sets "$dec_sets" --rounds $rounds --round-methods "$round_methods" --decoding $decoding $lang $cuts "${pt_systems[@]}"
  if ! is_done "$pt_exp/zero_shot/.done" "$pt_key"; then
    log "Stage 6: zero-shot: $pretrained's own decoder on test (digits spelled as the references)"
    speechtl zero-shot --source "$pretrained" --cuts ${cuts}_test.jsonl.gz --test-set test --spell-digits \
      --out-dir "$pt_exp/zero_shot/decode" --method "$pt_kind-zero-shot" --data 0shots --results exp/results.tsv \
      --skip-unavailable true
    mark_done "$pt_exp/zero_shot/.done" "$pt_key"
  fi
fi

if ! $loso && has_task asr && [ ${#ptt_systems[@]} -gt 0 ] && [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  steps/decode_all.sh --nj $nj --exp-dir "${pt_exp}_taught" --method-prefix "$pt_kind-taught-" --log-prefix "Stage 6" \
    --test-sets "$dec_sets" --decoding $decoding $lang $cuts "${ptt_systems[@]}"
fi

if ! $loso && has_task asr && [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  # The own source's zero-shot row, unless it was never trained (--methods "": only --pretrained-methods,
  # stage 4 skipped; before, stage 6 stopped there with "never trained to the end").
  own_zero=(zero-shot)
  if [ ${#systems[@]} -eq 0 ] && [ ! -f exp/source/final.pt ]; then
    own_zero=()
    log "Stage 6: no zero-shot row of the own source: exp/source/final.pt was never trained (stage 4)"
  fi
  steps/decode_all.sh --nj $nj --log-prefix "Stage 6" --test-sets "$dec_sets" --decoding $decoding \
    --rounds $rounds --round-methods "$round_methods" --zero-shot-lang $lang --zero-shot-data 0shots \
    --key "$(cat $fbank/.fsdd.done)" $lang $cuts "${own_zero[@]}" "${systems[@]}"
  steps/report.sh --title "fsdd: synthetic digits -> real speakers" --plot exp/plots/data_efficiency.png \
    --test-set test --decoding hlg exp/results.tsv exp/RESULTS.md
fi

classifiers=()
for t in classify-digit classify-speaker; do
  has_task $t || continue
  if [ $t = classify-speaker ] && [ -n "$test_speakers$train_speakers" ] && [ "$test_speakers" != "$train_speakers" ]; then
    log "Stage 7: skipping classify-speaker: speaker identification is closed-set; it needs the same --train-speakers and --test-speakers"
    continue
  fi
  for n in $shots; do
    for method in $classify_methods; do classifiers+=("${t}_${method}_${n}shots"); done
  done
done
classify_key() { echo "$(cat exp/source/.done) $(cat $fbank/.fsdd.done) $(cksum < conf/classify.yaml) system=$1"; }
classify_dir() { echo "exp/classify/${1%%_*}/${1#*_}"; }
classify() {
  # classify <task>_<method>_<N>shots: train the head (and encoder, per method), score the test set.
  local exp t=${1%%_*} system=${1#*_}
  exp=$(classify_dir "$1")
  reset_if_changed "$exp" "$(classify_key "$1")"
  steps/train.sh --task "$t" --method "${system%_*}" --source-checkpoint exp/source/final.pt \
    conf/classify.yaml "${cuts}_train_${system##*_}.jsonl.gz" "$exp"
  speechtl classify --checkpoint "$exp/final.pt" --cuts ${cuts}_test.jsonl.gz --test-set test --out-dir "$exp" \
    --method "${system%_*}" --data "${system##*_}" --results exp/classify.tsv
  mark_done "$exp/.done" "$(classify_key "$1")"
}

if [ ${#classifiers[@]} -gt 0 ] && [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  todo=()
  for c in "${classifiers[@]}"; do is_done "$(classify_dir "$c")/.done" "$(classify_key "$c")" || todo+=("$c"); done
  if [ ${#todo[@]} -gt 0 ]; then
    log "Stage 7: classification heads ${todo[*]} ($nj at a time; logs: exp/log/classify.<task>_<method>_<N>shots.log)"
    run_parallel $nj exp/log classify classify "${todo[@]}"
  fi
  log "Classification (exp/classify.tsv; confusion matrices: exp/classify/<task>/<system>/confusion-test.png):"
  column -t -s $'\t' exp/classify.tsv 2>/dev/null || cat exp/classify.tsv
fi
