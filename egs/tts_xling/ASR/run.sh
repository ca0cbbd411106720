#!/usr/bin/env bash
# tts_xling: cross-lingual transfer on synthetic speech, the default recipe (make demo).
# Source: en, nl, ro, ru spoken by espeak-ng voices; target: Irish (ga) spoken by other
# voices at other rates, with 5 or 30 labelled minutes. Every method in the registry
# adapts the source model; results.tsv, RESULTS.md and a data-efficiency plot compare them.
#   ./run.sh --text-dir /abs/path/text        use local {lang}.tsv files (id<TAB>sentence)
#   ./run.sh                                  the Living Audio Dataset's sentences shipped with speechtl (offline)
#   ./run.sh --stage 5 --methods "finetune freeze" --target-minutes 5
#   ./run.sh --stage 5 --stop-stage 6 --methods all --target-minutes 5   every registered method
#   --nj N: parallel jobs (synthesis, fbank, adaptation runs, decoding); --source-procs N: DDP processes
# Stages: 0 text, 1 synthesize, 2 fbank + target subsets, 3 lang, 4 source pretrain,
#         5 adapt (every method x amount, --nj at a time), 6 decode, RESULTS.md and plot.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
nj=2
source_procs=2
text_dir=
target_minutes="5 30"
unlabelled_target_minutes=10
# The fine-tuning family by default (make demo stays under 20 minutes on 2 cores);
# --methods all adds adapter, lora, dann, mmd, coral, reweight, kd, pseudo-label,
# reptile, fomaml and ssl.
methods="scratch finetune freeze linear-probe layerwise-lr"
decoding=greedy,hlg
speed_perturb="0.9 1.1"
lm_order=3
help_message=$(sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//')

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/common.sh

family="scratch finetune freeze linear-probe layerwise-lr"
beyond="adapter lora dann mmd coral reweight reptile fomaml ssl"
needs_teacher="kd pseudo-label"  # taught by finetune at the same amount: run after it
[ "$methods" = all ] && methods="$family $beyond $needs_teacher"

dl_dir=download
manifests=data/manifests
fbank=data/fbank
src_lang=data/lang_source
tgt_lang=data/lang_target
cuts=$fbank/tts_xling_cuts

# No --text-dir: the sentences shipped with speechtl (no network needed);
# `speechtl download tts_xling --from-web --target-dir download` fetches them afresh.
corpus_or_download text_dir $dl_dir/text tts_xling lad-text-shipped "the Living Audio Dataset's sentences (shipped copy)"

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  key="text_dir=$text_dir $(cksum < conf/corpus.yaml)"
  if ! is_done $manifests/.done "$key"; then
    log "Stage 1: synthesize source and target corpora (conf/corpus.yaml, nj=$nj)"
    speechtl prepare tts_xling --corpus-dir "$text_dir" --output-dir $manifests --config conf/corpus.yaml \
      --nj $nj --cmd "$cmd"
    mark_done $manifests/.done "$key"
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  key="$(cat $manifests/.done) speed_perturb=$speed_perturb target_minutes=$target_minutes unlabelled=$unlabelled_target_minutes"
  if ! is_done $fbank/.done "$key"; then
    log "Stage 2: fbank (80 bins, nj=$nj; target_train speed perturbation: ${speed_perturb:-none}); subsets of $target_minutes min"
    steps/compute_fbank.sh --nj $nj --cmd "$cmd" --prefix tts_xling \
      --splits "source_train source_dev target_train target_dev target_test target_unlabelled" \
      --speed-perturb "$speed_perturb" --perturb-splits target_train $manifests $fbank
    for m in $target_minutes; do
      speechtl subset --cuts ${cuts}_target_train.jsonl.gz --minutes "$m" --output "${cuts}_target_train_${m}min.jsonl.gz"
    done
    speechtl subset --cuts ${cuts}_target_unlabelled.jsonl.gz --minutes $unlabelled_target_minutes \
      --output ${cuts}_target_unlabelled_used.jsonl.gz
    mark_done $fbank/.done "$key"
  fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  key="$(cat $manifests/.done) lm_order=$lm_order"
  if ! is_done data/.lang.done "$key"; then
    log "Stage 3: character units; source lang, target lang with a $lm_order-gram word LM and HLG"
    steps/prepare_lang.sh --units char --lm-order 2 $manifests/source_train_text.txt $src_lang
    steps/prepare_lang.sh --units char --lm-order $lm_order $manifests/target_train_text.txt $tgt_lang
    mark_done data/.lang.done "$key"
  fi
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  key="$(cat $fbank/.done) $(cat data/.lang.done) $(cksum < conf/source.yaml) procs=$source_procs"
  if ! is_done exp/source/.done "$key"; then
    reset_if_changed exp/source "$key"
    log "Stage 4: source pretraining (conf/source.yaml, $source_procs DDP process(es)) into exp/source"
    steps/train.sh --num-procs $source_procs --method scratch --valid-cuts ${cuts}_source_dev.jsonl.gz conf/source.yaml $src_lang \
      ${cuts}_source_train.jsonl.gz exp/source
    mark_done exp/source/.done "$key"
  fi
fi

systems=()
for m in $target_minutes; do
  for method in $methods; do systems+=("${method}_${m}min"); done
done

teacher_of() { case " $needs_teacher " in *" ${1%_*} "*) echo "exp/finetune_${1##*_}/final.pt" ;; esac; }

adapt() {
  # adapt <method>_<N>min: one adaptation run, then its .done marker.
  local exp=exp/$1 method=${1%_*} data=${1##*_} teacher
  teacher=$(teacher_of "$1")
  reset_if_changed "$exp" "$(adapt_key "$1")"
  steps/train.sh --method "$method" --source-checkpoint exp/source/final.pt \
    --unlabelled-cuts ${cuts}_target_unlabelled_used.jsonl.gz ${teacher:+--options "teacher=$teacher"} \
    conf/adapt.yaml $tgt_lang "${cuts}_target_train_${data}.jsonl.gz" "$exp"
  mark_done "$exp/.done" "$(adapt_key "$1")"
}
adapt_key() {
  local teacher
  teacher=$(teacher_of "$1")
  echo "$(cat exp/source/.done) $(cksum < conf/adapt.yaml) system=$1${teacher:+ teacher=$(cat "$(dirname "$teacher")/.done" 2>/dev/null)}"
}

decode() {
  # decode <method>_<N>min | zero-shot: decode target_test, add rows to exp/results.tsv.
  if [ "$1" = zero-shot ]; then
    steps/decode.sh --test-set target_test --decoding greedy --method zero-shot --data 0min \
      --results exp/results.tsv exp/source/final.pt $src_lang ${cuts}_target_test.jsonl.gz exp/source/decode_zero_shot
    mark_done exp/source/decode_zero_shot/.done "$(decode_key "$1")"
    return
  fi
  local exp=exp/$1
  steps/decode.sh --test-set target_test --decoding $decoding --method "${1%_*}" --data "${1##*_}" \
    --results exp/results.tsv "$exp/final.pt" $tgt_lang ${cuts}_target_test.jsonl.gz "$exp/decode"
  mark_done "$exp/decode/.done" "$(decode_key "$1")"
}
decode_key() {
  if [ "$1" = zero-shot ]; then echo "$(cat exp/source/.done) decoding=greedy"; else echo "$(cat "exp/$1/.done") decoding=$decoding"; fi
}
decode_dir() { if [ "$1" = zero-shot ]; then echo exp/source/decode_zero_shot; else echo "exp/$1/decode"; fi; }

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for wave in first taught; do  # methods with a teacher wait for it (finetune at their amount)
    todo=()
    for s in "${systems[@]}"; do
      teacher=$(teacher_of "$s")
      if [ -n "$teacher" ]; then kind=taught; else kind=first; fi
      [ $kind = $wave ] || continue
      if [ -n "$teacher" ] && [ ! -f "$(dirname "$teacher")/.done" ]; then
        log "ERROR: ${s%_*} is taught by $(dirname "$teacher"): add finetune to --methods"; exit 1
      fi
      is_done "exp/$s/.done" "$(adapt_key "$s")" || todo+=("$s")
    done
    if [ ${#todo[@]} -gt 0 ]; then
      log "Stage 5: adapt ${todo[*]} ($nj at a time; logs: exp/log/adapt.<system>.log)"
      run_parallel $nj exp/log adapt adapt "${todo[@]}"
    fi
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  todo=()
  for s in zero-shot "${systems[@]}"; do is_done "$(decode_dir "$s")/.done" "$(decode_key "$s")" || todo+=("$s"); done
  if [ ${#todo[@]} -gt 0 ]; then
    log "Stage 6: decode target_test with ${todo[*]} ($decoding; zero-shot: greedy, source units; logs: exp/log/decode.<system>.log)"
    run_parallel $nj exp/log decode decode "${todo[@]}"
  fi
  speechtl report --results exp/results.tsv --results-md exp/RESULTS.md --title "tts_xling: en+nl+ro+ru -> ga" \
    --plot exp/plots/data_efficiency.png --test-set target_test --decoding hlg
  log "Results (exp/results.tsv; exp/RESULTS.md; exp/plots/data_efficiency.png):"
  column -t -s $'\t' exp/results.tsv 2>/dev/null || cat exp/results.tsv
fi
