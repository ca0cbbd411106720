#!/usr/bin/env bash
# A recipe for a new language from your own recordings, written by `speechtl new-recipe`.
# Every generated recipe has this same run.sh: what it runs on is in conf/recipe.conf
# (corpus, source model, amounts, methods, units, LM text); how it adapts in conf/adapt.yaml
# (conf/adapt_pretrained.yaml from a whisper:/hf: source).
#   ./run.sh                                         every stage
#   ./run.sh --stage 3 --methods "finetune freeze"   re-adapt some methods, then decode and report
#   ./run.sh --source /abs/path/exp/source/final.pt  another source (any conf/recipe.conf line is an option)
#   ./run.sh --minutes "2 10" --nj 4                 other nested amounts; 4 jobs at a time
#   ./run.sh --stage 3 --tune "finetune freeze"      first choose their options on the dev split (conf/sweep*.yaml)
#   ./run.sh --stage 3 --loso true --loso-methods "finetune dann pseudo-label"   leave-one-speaker-out
#     (steps/loso.sh): each speaker in turn is never heard; rows test_<speaker> and test_loso_mean
# Stages: 0 import + validate, 1 fbank at the source's rate and mel bins + nested amounts of
#   the labelled pool, 2 units (characters, or BPE for a large text) + word n-gram LM + HLG,
#   3 adapt the source: every method x amount, 4 decode dev and test (greedy, HLG; a whisper:
#   source's own decoder too, and an hf: model's CTC head if it was fine-tuned with one: rows
#   whisper-zero-shot, hf-zero-shot),
#   5 exp/results.tsv, exp/RESULTS.md, exp/plots/data_efficiency.png.
set -euo pipefail
invoked_from=${SPEECHTL_INVOKED_FROM:-$PWD}
cd "$(dirname "$0")"

stage=0
stop_stage=100
nj=2
# Set by conf/recipe.conf (its comments say what each means); options override them.
recipe=
corpus=
corpus_dir=
skip_bad=false
prepare_opts=
validate_opts=
source=
lm_text=
minutes=
methods=
units=auto
vocab_size=0
bpe_min_words=50000
lm_order=3
speed_perturb=
decoding=greedy,hlg
seeds=
tune=                # methods whose options stage 3 first chooses on the dev split (conf/sweep[_pretrained].yaml)
whisper_language=    # source=whisper:...: the language Whisper's own decoder transcribes in the zero-shot
                     # row (multilingual models, e.g. ro; empty: the model's own guess; .en models: English)
# Leave-one-speaker-out (stages 3-5 with --loso true): per held-out speaker, 20% of its recordings
# test, 10% dev, the rest untranscribed audio for the unlabelled-audio methods.
loso=false
loso_methods=        # empty: $methods
loso_minutes=0       # minutes of the other speakers' audio to adapt on; 0: all of it
personal_shots=      # N own labelled shots per transcript of the held-out speaker (repeated transcripts only)
loso_rounds=1        # rounds of the taught methods among them (kd, pseudo-label, balanced-pseudo-label): each
                     # round's student teaches the next (rows round<r>-<method>); choose it on the dev_loso_mean rows
. conf/recipe.conf
declare -A conf_paths=([source]=$source [corpus_dir]=$corpus_dir [lm_text]=$lm_text)  # relative: the recipe dir's
help_message=$(sed -n '2,17p' run.sh | sed 's/^# \{0,1\}//')

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/common.sh

# A relative path typed on the command line (egs/mylang/ASR/run.sh --source egs/x/ASR/exp/source/final.pt,
# from the repo) is read from where run.sh was started, first; conf/recipe.conf's are the recipe dir's.
for var in "${!conf_paths[@]}"; do
  path=${!var} kind='' typed=false
  [ "$path" = "${conf_paths[$var]}" ] || typed=true
  case "$path" in whisper:*|hf:*) kind=${path%%:*}: path=${path#*:} ;; esac
  if [ -n "$path" ] && [[ "$path" != /* ]] && [ -e "$invoked_from/$path" ] \
    && { [ "$typed" = true ] || [ ! -e "$path" ]; } && [ "$invoked_from" != "$PWD" ]; then
    # -s: links kept as typed (final.pt, not the avg-K.pt it points at), so stage keys stay the same
    printf -v "$var" '%s' "$kind$(cd "$invoked_from" && realpath -s -- "$path")"
    log "--${var//_/-} $path read from $invoked_from: ${!var}"
  fi
done
case "$source" in
  ""|whisper:*|hf:*) ;;
  *) if [ ! -e "$source" ]; then
       log "ERROR: source $source does not exist (a relative path is read from $invoked_from, then from $PWD)." \
         "Fix: give its absolute path, e.g. --source /abs/path/exp/source/final.pt"
       exit 1
     fi ;;
esac

# shellcheck disable=SC2086  # word lists: one name each
speechtl recipe-info methods $methods $tune $loso_methods  # a misspelled name stops here, not in stage 3
manifests=data/manifests
fbank=data/fbank
lang=data/lang
egs_dirs=("$(cd ../.. && pwd)" "$(cd "$(readlink -f utils)/../egs" && pwd)")  # where sources are looked for

if [ -z "$corpus" ] || [ -z "$corpus_dir" ]; then
  log "ERROR: no corpus: set corpus= (an importer: speechtl prepare --help) and corpus_dir= in conf/recipe.conf"
  exit 1
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  # With the import's rules: an updated speechtl that writes transcripts otherwise imports again, and
  # every stage after it reruns (their keys hold this one).
  key="corpus=$corpus corpus_dir=$corpus_dir skip_bad=$skip_bad prepare_opts=$prepare_opts validate_opts=$validate_opts"
  key+=" import_rules=$(speechtl recipe-info import-rules)"
  # and with the corpus's files: one fixed (a transcript, a segments line) or added is imported again
  key+=" files=$(speechtl recipe-info corpus-key --corpus-dir "$corpus_dir" --prepare-opts "$prepare_opts")"
  if ! is_done $manifests/.done "$key"; then
    skip=()
    [ "$skip_bad" = false ] || skip=(--skip-bad)
    log "Stage 0: import $corpus_dir ($corpus) into $manifests and validate it${skip[*]:+ (bad files left out: $manifests/bad_audio.txt)}"
    # Into a new dir, which replaces the old one once complete: a failed import loses nothing,
    # and no manifests of an earlier corpus stay beside this one's.
    rm -rf $manifests.new
    prepare_args=() validate_args=()
    split_opts prepare_args "$prepare_opts"
    split_opts validate_args "$validate_opts"
    speechtl prepare "$corpus" --corpus-dir "$corpus_dir" --output-dir $manifests.new "${skip[@]}" "${prepare_args[@]}"
    # Then every manifest is checked as written (the import left out the bad files it found with
    # --skip-bad and listed them in bad_audio.txt). Other rates are said once, against the source's.
    rate=()
    [ -z "$source" ] || rate=(--sampling-rate "$(speechtl recipe-info features --source "$source" | cut -d' ' -f1)")
    speechtl validate --manifest-dir $manifests.new "${rate[@]}" "${validate_args[@]}"
    rm -rf $manifests
    mv $manifests.new $manifests
    mark_done $manifests/.done "$key"
  fi
fi
[ "$stop_stage" -ge 1 ] || exit 0

if [ -z "$source" ]; then
  log "ERROR: no source model: set source= in conf/recipe.conf (or pass --source) to a checkpoint or whisper:PATH / hf:PATH"
  speechtl recipe-info sources --egs-dirs "${egs_dirs[@]}" 1>&2
  exit 1
fi

# The corpus's manifests: <prefix>_supervisions_<split>.jsonl.gz; train adapts, every other split is decoded.
train_sups=$(find $manifests -maxdepth 1 -name '*_supervisions_train.jsonl.gz' 2>/dev/null || true)
if [ "$(echo "$train_sups" | grep -c .)" -ne 1 ]; then
  log "ERROR: $manifests needs exactly one <corpus>_supervisions_train.jsonl.gz (found: ${train_sups:-none}); run stage 0"
  exit 1
fi
prefix=$(basename "$train_sups" _supervisions_train.jsonl.gz)
test_sets=$(find $manifests -maxdepth 1 -name "${prefix}_supervisions_*.jsonl.gz" | sed "s|.*/${prefix}_supervisions_||; s|\.jsonl\.gz$||" \
  | { grep -vx train || true; } | sort | tr '\n' ' ' | sed 's/ $//')
cuts=$fbank/${prefix}_cuts

# How to adapt: conf/adapt.yaml and conf/sweep.yaml from a speechtl checkpoint, the _pretrained
# pair from whisper:/hf: (smaller steps for a new head on a large encoder, fewer checkpoints kept).
adapt_base=conf/adapt.yaml sweep_space=conf/sweep.yaml
case "$source" in whisper:*|hf:*) adapt_base=conf/adapt_pretrained.yaml sweep_space=conf/sweep_pretrained.yaml ;; esac
for f in $adapt_base $sweep_space; do
  [ -f "$f" ] || { log "ERROR: $f is missing (a recipe generated before it existed). Fix: speechtl new-recipe ... --force rewrites the generated files and keeps data/ and exp/"; exit 1; }
done
source_key=$(source_key "$source")

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  feats=$(speechtl recipe-info features --source "$source")
  read -r rate bins <<< "$feats"
  key="$(cat $manifests/.done) rate=$rate bins=$bins speed_perturb=$speed_perturb minutes=$minutes"
  if ! is_done $fbank/.done "$key"; then
    log "Stage 1: fbank of ${prefix} train${test_sets:+ $test_sets} at the source's $rate Hz and $bins mel bins (nj=$nj; train speed perturbation: ${speed_perturb:-none}); amounts: $minutes min and the whole pool"
    steps/compute_fbank.sh --nj "$nj" --cmd "$cmd" --prefix "$prefix" --splits "train $test_sets" \
      --sampling-rate "$rate" --num-mel-bins "$bins" --speed-perturb "$speed_perturb" $manifests $fbank
    # Each amount (the first N minutes of the pool in a seeded order, as speechtl subset --minutes N)
    # to ${cuts}_train_<label>.jsonl.gz; amounts.txt: "<label> <minutes|all>" lines.
    # shellcheck disable=SC2086
    speechtl recipe-info amounts --cuts "${cuts}_train.jsonl.gz" --minutes $minutes \
      --output-prefix "${cuts}_train" > $fbank/amounts.txt
    mark_done $fbank/.done "$key"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  key="$(cat $manifests/.done) units=$units vocab_size=$vocab_size bpe_min_words=$bpe_min_words lm_order=$lm_order lm_text=$lm_text"
  [ -z "$lm_text" ] || key="$key $(cksum < "$lm_text")"
  if ! is_done $lang/.done "$key"; then
    log "Stage 2: units and a $lm_order-gram word LM on the training text${lm_text:+ and $lm_text}; HLG"
    speechtl recipe-info text --supervisions "$train_sups" --output data/local/train_text.txt
    choice=$(speechtl recipe-info units --text data/local/train_text.txt --units "$units" --vocab-size "$vocab_size" \
      --min-words "$bpe_min_words")
    read -r unit_kind unit_vocab unit_reason <<< "$choice"
    extra=()  # --lm-text: LM sentences (and lexicon words), not units: the units are the transcripts', so
    # another --lm-text or --lm-order rebuilds HLG and redoes the decodes, not the models (units_key)
    if [ -n "$lm_text" ]; then
      lm_norm=()  # the LM text normalized as the transcripts were at import (its --map-chars, ş/ș joined)
      [ ! -f "$manifests/${prefix}_text_norm.json" ] || lm_norm=(--text-norm-config "$manifests/${prefix}_text_norm.json")
      speechtl recipe-info lm-text --text "$lm_text" --output data/local/lm_extra.txt "${lm_norm[@]}"
      extra=(--extra-lm-text data/local/lm_extra.txt)
    fi
    log "Stage 2: units: $unit_reason"
    steps/prepare_lang.sh --units "$unit_kind" --vocab-size "$unit_vocab" --lm-order "$lm_order" "${extra[@]}" \
      data/local/train_text.txt $lang
    echo "$unit_reason" > $lang/units_choice.txt
    mark_done $lang/.done "$key"
  fi
fi

systems=()
if [ "$stop_stage" -ge 3 ]; then
  [ -f $fbank/amounts.txt ] || { log "ERROR: $fbank/amounts.txt is missing: run stage 1 first"; exit 1; }
  # the amounts are stage 1's: a --minutes given to a later stage would be ignored without a word
  if [ "$stage" -gt 1 ] && [ -f $fbank/.done ] && [[ "$(cat $fbank/.done)" != *" minutes=$minutes" ]]; then
    log "WARNING: --minutes '$minutes' is not stage 1's ($(grep -o ' minutes=.*' $fbank/.done)): the amounts are stage 1's, $(cut -d' ' -f1 $fbank/amounts.txt | tr '\n' ' ')(rerun from --stage 1 to change them)"
  fi
  mapfile -t systems < <(system_names "$methods" "$(cut -d' ' -f1 $fbank/amounts.txt)" "$seeds")
fi

loso_args=(--nj "$nj" --minutes "$loso_minutes" --methods "${loso_methods:-$methods}" --personal-shots "$personal_shots"
  --seeds "$seeds" --decoding "$decoding" --source-checkpoint "$source" --rounds "$loso_rounds")
loso_pool="${cuts}_train.jsonl.gz"
for t in $test_sets; do loso_pool="$loso_pool ${cuts}_$t.jsonl.gz"; done
if $loso && [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  steps/loso.sh "${loso_args[@]}" --part adapt --log-prefix "Stage 3" --key "$(cat $fbank/.done) $(units_key $lang) $source_key" \
    $adapt_base $lang "$loso_pool" data/loso exp/loso
fi
if $loso && [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  steps/loso.sh "${loso_args[@]}" --part decode --log-prefix "Stage 4" --key "$(cat $fbank/.done) $(units_key $lang) $source_key" \
    $adapt_base $lang "$loso_pool" data/loso exp/loso
fi

adapt_conf=$adapt_base
if ! $loso && [ -n "$tune" ] && [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  # Options chosen on dev, never on test: each --tune method's grid at the smallest amount, the
  # same train.num_steps per candidate as every method; the choice -> exp/adapt_tuned.yaml.
  case " $test_sets " in *" dev "*) ;; *)
    log "ERROR: --tune chooses options on a dev split, and $manifests has only: $test_sets. Fix: give the corpus a dev split, or leave --tune empty"
    exit 1 ;;
  esac
  fewest=$(head -n 1 $fbank/amounts.txt | cut -d' ' -f1)
  steps/tune.sh --nj "$nj" --methods "$tune" --source-checkpoint "$source" --log-prefix "Stage 3" \
    --key "$(cat $fbank/.done) $(units_key $lang) $source_key" $adapt_base $sweep_space $lang \
    "${cuts}_train_$fewest.jsonl.gz" "${cuts}_dev.jsonl.gz" exp/sweep exp/adapt_tuned.yaml
fi
[ -z "$tune" ] || adapt_conf=exp/adapt_tuned.yaml

if ! $loso && [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  steps/adapt_all.sh --nj "$nj" --log-prefix "Stage 3" --source-checkpoint "$source" \
    --key "$(cat $fbank/.done) $(units_key $lang) $source_key" "$adapt_conf" $lang "${cuts}_train" "${systems[@]}"
fi

if ! $loso && [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  steps/decode_all.sh --nj "$nj" --log-prefix "Stage 4" --test-sets "$test_sets" --decoding "$decoding" \
    $lang "$cuts" "${systems[@]}"
  # What the pretrained model does before any of your labels: Whisper's own decoder and vocabulary, or
  # the CTC head of an hf: model fine-tuned with one (rows whisper-zero-shot, hf-zero-shot, data 0min),
  # normalized as your transcripts were at import. A pretrained-only hf: model has no row.
  zs_key="$source_key $(cat $manifests/.done) test_sets=$test_sets whisper_language=$whisper_language"
  norm_conf=$manifests/${prefix}_text_norm.json  # written by the importers (none for built-in corpora)
  [ -f "$norm_conf" ] || norm_conf=
  if [[ "$source" == whisper:* || "$source" == hf:* ]] && ! is_done exp/zero_shot/.done "$zs_key"; then
    log "Stage 4: zero-shot: $source's own decoder on $test_sets${whisper_language:+ in $whisper_language}"
    for t in $test_sets; do
      speechtl zero-shot --source "$source" --cuts "${cuts}_$t.jsonl.gz" --test-set "$t" --text-norm import \
        ${norm_conf:+--text-norm-config "$norm_conf"} \
        ${whisper_language:+--language "$whisper_language"} --out-dir exp/zero_shot/decode \
        --method "${source%%:*}-zero-shot" --data 0min --results exp/results.tsv --skip-unavailable true
    done
    mark_done exp/zero_shot/.done "$zs_key"
  fi
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  plot_set="test"
  case " $test_sets " in *" test "*) ;; *) plot_set=${test_sets##* } ;; esac
  ! $loso || plot_set=test_loso_mean
  # The plot's decoding: with dev decoded several ways, the one best on dev (HLG can be far worse
  # than greedy when the LM misses the target's words); otherwise the last of --decoding.
  plot_decoding=${decoding##*,}
  case " $test_sets " in *" dev "*) [ "$decoding" = "$plot_decoding" ] || plot_decoding=auto ;; esac
  steps/report.sh --title "$recipe: $source -> $corpus ($corpus_dir)" --plot exp/plots/data_efficiency.png \
    --test-set "$plot_set" --decoding "$plot_decoding" exp/results.tsv exp/RESULTS.md
  # How many dev/test transcripts are also train's (read prompts), from the import's report: HLG's WER
  # on those is that of sentences its LM has seen.
  overlap=$(grep -h " transcripts (.*%) are also in train" "$manifests/${prefix}_import_report.txt" 2>/dev/null || true)
  {
    echo
    echo "Units: $(cat $lang/units_choice.txt). Amounts: $(cut -d' ' -f1 $fbank/amounts.txt | tr '\n' ' ')(the last is the whole labelled pool)."
    if [ -n "$overlap" ]; then
      echo
      echo "Transcripts also in train (the import's report; HLG's word LM is trained on train's text, so its WER on these is that of sentences it has seen, greedy's is not):"
      while IFS= read -r line; do echo "- $line"; done <<< "$overlap"
    fi
  } >> exp/RESULTS.md
fi
