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
#   --seeds "1 2 3": every method x amount once per training seed (exp/<method>_<N>min_s<seed>)
#   --tune "finetune freeze": first tune their options on target_dev (speechtl sweep, conf/sweep.yaml)
#   --rounds 3: pseudo-label (--round-methods) trains twice more, each round taught by the last
#     (exp/round<r>/<method>_<N>min, rows round<r>-<method>); choose N on the target_dev rows
#   --pretrained whisper:/abs/whisper-tiny.en: also --pretrained-methods from a pretrained model
#     (conf/adapt_whisper.yaml; exp/whisper/<method>_<N>min, rows whisper-<method>, whisper-zero-shot)
#   --pretrained-tune "finetune lp-ft": first choose those --pretrained-methods' options on target_dev
#     (conf/sweep_whisper.yaml -> exp/whisper/adapt_tuned.yaml); --tune-decoding hlg: by HLG dev WER, as reported
# Stages: 0 text, 1 synthesize, 2 fbank + target subsets, 3 lang, 4 source pretrain,
#         5 adapt (every method x amount, --nj at a time), 6 decode, RESULTS.md and plot.
set -euo pipefail
invoked_from=${SPEECHTL_INVOKED_FROM:-$PWD}  # relative --corpus-dir/--text-dir: also read from here
cd "$(dirname "$0")"

stage=0
stop_stage=100
nj=2
source_procs=2
text_dir=
target_minutes="5 30"
unlabelled_target_minutes=10
# The fine-tuning family by default (make demo stays under 20 minutes on 2 cores);
# --methods all adds lp-ft, adapter, lora, dann, mmd, coral, reweight, speaker-adversarial,
# entropy, infomax, kd, pseudo-label, reptile, fomaml and ssl: every method of the registry
# but balanced-pseudo-label (for a closed prompt set) and vtln, which --methods can name.
methods="scratch finetune freeze linear-probe layerwise-lr"
decoding=greedy,hlg
speed_perturb="0.9 1.1"
lm_order=3
seeds=  # empty: one run per system, the seed of conf/adapt.yaml
tune=   # methods whose options stage 5 first searches on target_dev (not kd, pseudo-label: they need a teacher)
tune_trials=0  # 0: every point of conf/sweep.yaml's grid; N: N seeded random points
tune_decoding=greedy  # the dev WER that --tune and --pretrained-tune choose by: greedy, or hlg (what RESULTS.md reports)
rounds=1       # self-training rounds of --round-methods (among kd pseudo-label in --methods); 1: none
round_methods=pseudo-label
# A pretrained source beside exp/source: whisper:PATH_OR_ID or hf:PATH_OR_ID (relative paths: to this
# directory). Stage 5 also adapts --pretrained-methods from it into exp/<whisper|hf>/<method>_<N>min[_s<seed>]
# (the same --target-minutes and --seeds), stage 6 decodes them (rows <whisper|hf>-<method>) and Whisper's
# own decoder (<whisper|hf>-zero-shot, 0min: Whisper's, --pretrained-language ga for a multilingual one, or an
# hf: model's CTC head if it was fine-tuned with one).
pretrained=
pretrained_methods="finetune freeze"
pretrained_config=conf/adapt_whisper.yaml
pretrained_language=
pretrained_tune=   # --pretrained-methods whose options stage 5 first searches on target_dev
pretrained_tune_seeds=  # every --pretrained-tune candidate trains once per seed, scored over all (empty: the conf's seed)
help_message=$(sed -n '2,20p' run.sh | sed 's/^# \{0,1\}//')

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/common.sh

family="scratch finetune freeze linear-probe layerwise-lr"
beyond="lp-ft adapter lora dann mmd coral reweight speaker-adversarial entropy infomax reptile fomaml ssl"
needs_teacher="kd pseudo-label"  # the taught methods of --methods all (balanced-pseudo-label needs a closed prompt set)
[ "$methods" = all ] && methods="$family $beyond $needs_teacher"
check_rounds "$rounds" "$round_methods" "$TAUGHT_METHODS"  # before any stage runs
needs_pretrained --pretrained-tune "$pretrained_tune"

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
  # the sentences' checksum too: text fetched afresh or edited in --text-dir is synthesized again
  # (none there: stage 1 names what is missing)
  key="text_dir=$text_dir $(cksum < conf/corpus.yaml) text=$({ cat "$text_dir"/*.tsv 2>/dev/null || true; } | cksum | tr ' ' -)"
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
  # keyed on the source's units, not on the LMs: another --lm-order rebuilds HLG and redoes the decodes
  # only (the target's units follow from the target text, which $fbank/.done holds)
  key="$(cat $fbank/.done) $(units_key $src_lang data/.lang.done) $(cksum < conf/source.yaml) procs=$source_procs"
  if ! is_done exp/source/.done "$key"; then
    reset_if_changed exp/source "$key"
    log "Stage 4: source pretraining (conf/source.yaml, $source_procs DDP process(es)) into exp/source"
    steps/train.sh --num-procs $source_procs --method scratch --valid-cuts ${cuts}_source_dev.jsonl.gz conf/source.yaml $src_lang \
      ${cuts}_source_train.jsonl.gz exp/source
    mark_done exp/source/.done "$key"
  fi
fi

mapfile -t systems < <(system_names "$methods" "$target_minutes" "$seeds" min)

pt_systems=()
pretrained_source  # utils/common.sh: pt_kind, pt_exp; a local path made absolute
[ -z "$pretrained" ] || mapfile -t pt_systems < <(system_names "$pretrained_methods" "$target_minutes" "$seeds" min)
pt_key="$(cat $fbank/.done 2>/dev/null || true) $(source_key "$pretrained")"

adapt_conf=conf/adapt.yaml
[ -n "$tune" ] && adapt_conf=exp/adapt_tuned.yaml
amount=${target_minutes%% *}min  # what --tune and --pretrained-tune choose on
if [ -n "$tune" ] && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  # Options chosen on target_dev, never on test: each --tune method's grid at the smallest amount,
  # train.num_steps updates per candidate (the same budget as every method); the choice -> $adapt_conf.
  steps/tune.sh --nj $nj --decoding "$tune_decoding" --methods "$tune" --trials $tune_trials --dev-set target_dev --log-prefix "Stage 5" \
    --key "$(cat exp/source/.done)" --unlabelled-cuts ${cuts}_target_unlabelled_used.jsonl.gz \
    conf/adapt.yaml conf/sweep.yaml $tgt_lang "${cuts}_target_train_$amount.jsonl.gz" ${cuts}_target_dev.jsonl.gz \
    exp/sweep "$adapt_conf"
fi

if [ ${#systems[@]} -gt 0 ] && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  # kd and pseudo-label are taught by finetune at their amount: steps/adapt_all.sh runs them after it.
  steps/adapt_all.sh --nj $nj --log-prefix "Stage 5" --key "$(cat exp/source/.done)" --taught "$TAUGHT_METHODS" \
    --rounds $rounds --round-methods "$round_methods" --unlabelled-cuts ${cuts}_target_unlabelled_used.jsonl.gz "$adapt_conf" $tgt_lang ${cuts}_target_train "${systems[@]}"
fi

if [ -n "$pretrained_tune" ]; then
  pt_tuned=$pt_exp/adapt_tuned.yaml
  if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
    # As --tune, from the pretrained model: each method's grid at the smallest amount, decoded on
    # target_dev only, the same train.num_steps per candidate; the choice -> $pt_tuned.
    steps/tune.sh --nj $nj --decoding "$tune_decoding" --methods "$pretrained_tune" --train-seeds "$pretrained_tune_seeds" \
      --dev-set target_dev --log-prefix "Stage 5: $pt_kind" \
      --key "$pt_key" --source-checkpoint "$pretrained" --unlabelled-cuts ${cuts}_target_unlabelled_used.jsonl.gz \
      "$pretrained_config" conf/sweep_whisper.yaml $tgt_lang "${cuts}_target_train_$amount.jsonl.gz" \
      ${cuts}_target_dev.jsonl.gz "$pt_exp/sweep" "$pt_tuned"
  fi
  pretrained_config=$pt_tuned
fi

if [ -n "$pretrained" ] && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  steps/adapt_all.sh --nj $nj --exp-dir "$pt_exp" --source-checkpoint "$pretrained" --log-prefix "Stage 5" \
    --key "$pt_key" --taught "$TAUGHT_METHODS" --unlabelled-cuts ${cuts}_target_unlabelled_used.jsonl.gz \
    "$pretrained_config" $tgt_lang ${cuts}_target_train "${pt_systems[@]}"
fi

if [ -n "$pretrained" ] && [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  steps/decode_all.sh --nj $nj --exp-dir "$pt_exp" --method-prefix "$pt_kind-" --log-prefix "Stage 6" \
    --test-sets target_test --decoding $decoding $tgt_lang $cuts "${pt_systems[@]}"
  if ! is_done "$pt_exp/zero_shot/.done" "$pt_key language=$pretrained_language"; then
    log "Stage 6: zero-shot: $pretrained's own decoder on target_test${pretrained_language:+ (language $pretrained_language)}"
    speechtl zero-shot --source "$pretrained" --cuts ${cuts}_target_test.jsonl.gz --test-set target_test \
      ${pretrained_language:+--language "$pretrained_language"} --out-dir "$pt_exp/zero_shot/decode" \
      --method "$pt_kind-zero-shot" --data 0min --results exp/results.tsv --skip-unavailable true
    mark_done "$pt_exp/zero_shot/.done" "$pt_key language=$pretrained_language"
  fi
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  # With rounds, dev too: the number of rounds is chosen on target_dev's rows, never on target_test's.
  dec_sets=target_test
  [ "$rounds" = 1 ] || dec_sets="target_dev target_test"
  # The own source's zero-shot row, unless it was never trained (--methods "": only --pretrained-methods,
  # stage 4 skipped; before, stage 6 stopped there with "never trained to the end").
  own_zero=(zero-shot)
  if [ ${#systems[@]} -eq 0 ] && [ ! -f exp/source/final.pt ]; then
    own_zero=()
    log "Stage 6: no zero-shot row of the own source: exp/source/final.pt was never trained (stage 4)"
  fi
  steps/decode_all.sh --nj $nj --log-prefix "Stage 6" --test-sets "$dec_sets" --decoding $decoding \
    --rounds $rounds --round-methods "$round_methods" --zero-shot-lang $src_lang --zero-shot-decoding greedy --zero-shot-data 0min \
    $tgt_lang $cuts "${own_zero[@]}" "${systems[@]}"
  steps/report.sh --title "tts_xling: en+nl+ro+ru -> ga" --plot exp/plots/data_efficiency.png \
    --test-set target_test --decoding hlg exp/results.tsv exp/RESULTS.md
fi
