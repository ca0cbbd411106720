#!/usr/bin/env bash
# yesno: the smallest real recipe, end to end with HLG decoding.
#   ./run.sh                                   download, then every stage
#   ./run.sh --corpus-dir /abs/path/waves_yesno  use a local copy
#   ./run.sh --stage 4 --stop-stage 5          retrain and decode only
#   ./run.sh --seeds "42 43 44"                 one model per training seed (exp/scratch_all_s<seed>)
#   ./run.sh --pretrained whisper:/abs/whisper-tiny.en   also --pretrained-methods from a pretrained model
#     (conf/adapt_whisper.yaml; exp/whisper/<method>_all, rows whisper-<method>, whisper-zero-shot)
#   ./run.sh --pretrained whisper:PATH --tune "finetune freeze"   their options chosen first by 3-fold
#     cross-validation on train (yesno has no dev set; conf/sweep_whisper.yaml), never on test
# Stages: 0 download, 1 manifests, 2 fbank, 3 lang/G/HLG, 4 train, 5 decode+score,
#   6 ONNX export (fp32, int8) and decoding through sherpa-onnx.
# Finished stages leave .done markers and are skipped on re-runs with the same arguments.
set -euo pipefail
invoked_from=${SPEECHTL_INVOKED_FROM:-$PWD}  # relative --corpus-dir/--text-dir: also read from here
cd "$(dirname "$0")"

stage=0
stop_stage=100
nj=2
corpus_dir=
skip_bad=false  # --skip-bad: leave unreadable audio out (listed in data/manifests/bad_audio.txt)
skip_bad_audio=  # its earlier name, still taken: --skip-bad-audio true
lm_order=1
train_procs=1  # >1: DDP processes (gloo on CPU) splitting each batch (max_duration_scope: global)
speed_perturb="0.9 1.1"
decoding=greedy,hlg,hlg-lattice
seeds=  # empty: one model, the seed of conf/train.yaml
# A pretrained source: whisper:PATH_OR_ID or hf:PATH_OR_ID (relative paths: to this directory). Stage 4 also
# trains --pretrained-methods from it into exp/<whisper|hf>/<method>_all[_s<seed>] (--seeds too), stage 5
# decodes them (rows <whisper|hf>-<method>) and the source's own decoder (<whisper|hf>-zero-shot, data none:
# Whisper's, or an hf: model's CTC head if it was fine-tuned with one).
pretrained=
pretrained_methods="finetune freeze"
pretrained_config=conf/adapt_whisper.yaml
# Pretrained methods whose options stage 4 first chooses on dev: yesno ships no dev set, so the
# train utterances are split into --tune-folds folds (speechtl folds: a recording and its
# speed-perturbed copies in one fold) and speechtl sweep sums each point's dev errors over them.
tune=
tune_folds=3
tune_space=conf/sweep_whisper.yaml
help_message=$(sed -n '2,13p' run.sh | sed 's/^# \{0,1\}//')

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/common.sh
needs_pretrained --tune "$tune"  # before any stage runs
case "$skip_bad_audio" in true|false) skip_bad=$skip_bad_audio ;; "") ;; *)
  log "ERROR: --skip-bad-audio takes true or false, got '$skip_bad_audio'"; exit 1 ;;
esac

dl_dir=download
manifests=data/manifests
fbank=data/fbank
lang=data/lang
mapfile -t systems < <(system_names scratch all "$seeds")
pt_systems=()
pretrained_source  # utils/common.sh: pt_kind, pt_exp; a local path made absolute
[ -z "$pretrained" ] || mapfile -t pt_systems < <(system_names "$pretrained_methods" all "$seeds")

corpus_or_download corpus_dir $dl_dir/waves_yesno yesno yesno "yesno"

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  key="corpus_dir=$corpus_dir skip_bad_audio=$skip_bad"
  if ! is_done $manifests/.done "$key"; then
    log "Stage 1: manifests from $corpus_dir"
    speechtl prepare yesno --corpus-dir "$corpus_dir" --output-dir $manifests --skip-bad $skip_bad
    mark_done $manifests/.done "$key"
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  key="$(cat $manifests/.done) speed_perturb=$speed_perturb"
  if ! is_done $fbank/.done "$key"; then
    log "Stage 2: fbank (23 bins, 8 kHz, nj=$nj, train speed perturbation: ${speed_perturb:-none})"
    steps/compute_fbank.sh --nj $nj --cmd "$cmd" --prefix yesno --splits "train test" \
      --sampling-rate 8000 --num-mel-bins 23 --speed-perturb "$speed_perturb" $manifests $fbank
    mark_done $fbank/.done "$key"
  fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  key="$(cat $manifests/.done) lm_order=$lm_order"
  if ! is_done $lang/.done "$key"; then
    log "Stage 3: lexicon, tokens, words, $lm_order-gram G, HLG"
    local/yesno_prepare_dict.py $manifests data/local/dict
    steps/prepare_lang.sh --lm-order $lm_order data/local/dict/lexicon.txt data/local/dict/lm_train.txt $lang
    mark_done $lang/.done "$key"
  fi
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  # keyed on the units, not the LM: another --lm-order rebuilds HLG and redoes the decodes only
  key="$(cat $fbank/.done) $(units_key $lang) $(cksum < conf/train.yaml) procs=$train_procs"
  for system in "${systems[@]}"; do
    split_system "$system"
    exp=exp/$system
    if ! is_done "$exp/.done" "$key"; then
      reset_if_changed "$exp" "$key"
      log "Stage 4: train (conf/train.yaml${sys_seed:+, seed $sys_seed}) into $exp"
      steps/train.sh --cmd "$cmd" --num-procs $train_procs --method scratch ${sys_seed:+--sets "seed=$sys_seed"} \
        conf/train.yaml $lang $fbank/yesno_cuts_train.jsonl.gz "$exp"
      mark_done "$exp/.done" "$key"
    fi
  done
  if [ -n "$tune" ]; then
    folds=data/folds
    key="$(cat $fbank/.done) k=$tune_folds"
    if ! is_done $folds/.done "$key"; then
      log "Stage 4: $tune_folds dev folds of the train utterances into $folds"
      speechtl folds --cuts $fbank/yesno_cuts_train.jsonl.gz --k "$tune_folds" --output-dir $folds > /dev/null
      mark_done $folds/.done "$key"
    fi
    trains=() devs=()
    for ((k = 0; k < tune_folds; k++)); do trains+=("$folds/train_f$k.jsonl.gz"); devs+=("$folds/dev_f$k.jsonl.gz"); done
    tuned=$pt_exp/adapt_tuned.yaml
    # each point's dev errors summed over the folds; the choices -> $tuned (rebuilt from the base conf
    # on every run, so an edit there reaches every method); a method is swept again when its key changes
    steps/tune.sh --nj "$nj" --methods "$tune" --log-prefix "Stage 4" --key "$(cat $folds/.done) $(units_key $lang)" \
      --source-checkpoint "$pretrained" "$pretrained_config" "$tune_space" $lang "${trains[*]}" "${devs[*]}" \
      "$pt_exp/sweep" "$tuned"
    pretrained_config=$tuned
  fi
  for system in "${pt_systems[@]}"; do
    split_system "$system"
    exp=$pt_exp/$system
    # keyed on what this method reads from the conf (speechtl conf-key), so adding or editing
    # another method's entry trains nothing again
    key="$(cat $fbank/.done) $(units_key $lang) $(speechtl conf-key --config "$pretrained_config" --method "$sys_method") $(source_key "$pretrained")"
    if ! is_done "$exp/.done" "$key"; then
      reset_if_changed "$exp" "$key"
      log "Stage 4: $sys_method from $pretrained ($pretrained_config${sys_seed:+, seed $sys_seed}) into $exp"
      steps/train.sh --cmd "$cmd" --num-procs $train_procs --method "$sys_method" --source-checkpoint "$pretrained" \
        ${sys_seed:+--sets "seed=$sys_seed"} "$pretrained_config" $lang $fbank/yesno_cuts_train.jsonl.gz "$exp"
      mark_done "$exp/.done" "$key"
    fi
  done
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  # One system per seed (exp/scratch_all[_s<seed>]: method scratch, data all); HLG search in $nj jobs.
  steps/decode_all.sh --nj 1 --decode-nj $nj --cmd "$cmd" --log-prefix "Stage 5" --test-sets test \
    --decoding $decoding $lang $fbank/yesno_cuts "${systems[@]}"
  if [ -n "$pretrained" ]; then
    steps/decode_all.sh --nj 1 --decode-nj $nj --cmd "$cmd" --log-prefix "Stage 5" --test-sets test --exp-dir "$pt_exp" \
      --method-prefix "$pt_kind-" --decoding $decoding $lang $fbank/yesno_cuts "${pt_systems[@]}"
    key="$(cat $fbank/.done) $(source_key "$pretrained")"
    if ! is_done "$pt_exp/zero_shot/.done" "$key"; then
      log "Stage 5: zero-shot: $pretrained's own decoder on test"
      speechtl zero-shot --source "$pretrained" --cuts $fbank/yesno_cuts_test.jsonl.gz --test-set test \
        --out-dir "$pt_exp/zero_shot/decode" --method "$pt_kind-zero-shot" --data none --results exp/results.tsv \
        --skip-unavailable true
      mark_done "$pt_exp/zero_shot/.done" "$key"
    fi
  fi
  steps/report.sh --title "yesno results" exp/results.tsv exp/RESULTS.md
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  # Deploy the first system: model.onnx/model.int8.onnx for sherpa-onnx, decoded from the test audio.
  split_system "${systems[0]}"
  exp=exp/${systems[0]}
  [ -f "$exp/.done" ] || { log "Stage 6: $exp is not trained; run stage 4 first"; exit 1; }
  # the graph and model exported too (size-mtime): a rebuilt lang or a re-averaged model is exported again
  key="$(cat "$exp/.done") graph=$(stamp $lang/HLG.fst) model=$(stamp "$exp/final.pt")"
  if ! is_done "$exp/onnx/.done" "$key"; then
    log "Stage 6: export $exp to ONNX, decode test with sherpa-onnx"
    steps/export_onnx.sh --test-set test --method "$sys_method" --data "$sys_data" --results exp/results.tsv \
      "$exp/final.pt" $lang $fbank/yesno_cuts_test.jsonl.gz "$exp/onnx"
    steps/report.sh --title "yesno results" exp/results.tsv exp/RESULTS.md
    mark_done "$exp/onnx/.done" "$key"
  fi
fi
