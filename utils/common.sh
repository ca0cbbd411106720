#!/usr/bin/env bash
# Helpers every recipe and step sources: log() with file and line, and .done markers.

# The methods that learn from a teacher model (in the registry: those whose options have a
# `teacher` field, speechtl.adapt.base.needs_teacher; tests/test_shell.py holds the two equal).
# steps/adapt_all.sh trains them after their teacher; only they can have self-training rounds.
# shellcheck disable=SC2034  # read by the scripts that source this
TAUGHT_METHODS="kd pseudo-label balanced-pseudo-label"

log() {
  # log "message": prints time, the caller's file:line and function, then the message.
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

same_key() {
  # same_key MARKER KEY: MARKER holds KEY, or holds what KEY was before speechtl keyed more finely, and
  # is then rewritten with KEY instead of being redone. KEY as it was:
  # - with each "units=SUM:LANG_MARKER" word (units_key) as that lang marker's whole key, if that marker
  #   is older than MARKER (training once depended on the whole lang dir, LM included);
  # - and then as is, less its "init=" word (conf-key: an init_param file's stamp), or less every
  #   fingerprint, "weights=" / "text=" / "graph=" / "model=" / "init=" (a pretrained folder's weights,
  #   tts_xling's sentences, the graph and model a decode used were once not in the keys).
  local stored was word lang_marker cand
  stored=$(cat "$1")
  [ "$stored" = "$2" ] && return 0
  was=$2
  while read -r word; do
    lang_marker=${word#*:}
    if [ -f "$lang_marker" ] && [ "$1" -nt "$lang_marker" ]; then was=${was//"$word"/"$(cat "$lang_marker")"}; fi
  done < <(printf '%s' "$2" | grep -oE '(^| )units=[^ :]*:[^ ]+' | sed 's/^ //' || true)
  for cand in "$was" "$(printf '%s' "$was" | sed -E 's/ init=[^ ]*//g')" \
    "$(printf '%s' "$was" | sed -E 's/ (weights|text|graph|model|init)=[^ ]*//g')"; do
    if [ "$cand" != "$2" ] && [ "$stored" = "$cand" ]; then
      printf '%s' "$2" > "$1"
      return 0
    fi
  done
  return 1
}

units_key() {
  # units_key LANG_DIR [LANG_MARKER]: "units=SUM:LANG_MARKER", SUM over what training reads from the
  # lang dir, for the keys of training and tuning: the units (tokens.txt but its #N disambiguation
  # symbols, which follow the LM's words), lexicon.txt where the units are not sentencepiece's,
  # optional_silence.txt and spaceless.txt. Another LM (--lm-order, --lm-text) rebuilds HLG and redoes
  # the decodes (their keys hold graph=), not the models. Of a bpe.model, tokens.txt lists the pieces;
  # its bytes are not summed (a model written before speechtl 2026-12-08 holds a temporary path, other
  # on every build), and what its merges were learnt from, the transcripts, the stages' keys hold.
  # LANG_MARKER (default LANG_DIR/.done) names the lang stage's marker, for same_key to recognise a
  # marker written when training keys held its whole key.
  local dir=$1 marker=${2:-$1/.done} f files=()
  for f in optional_silence.txt spaceless.txt; do
    [ -f "$dir/$f" ] && files+=("$dir/$f")
  done
  [ -f "$dir/bpe.model" ] || [ ! -f "$dir/lexicon.txt" ] || files+=("$dir/lexicon.txt")
  if [ ! -f "$dir/tokens.txt" ]; then
    log "ERROR: $dir/tokens.txt is missing. Fix: run the lang stage first" 1>&2
    return 1
  fi
  echo "units=$({ grep -v '^#' "$dir/tokens.txt"; [ ! -f "$dir/bpe.model" ] || echo sentencepiece; cat "${files[@]}" /dev/null; } | cksum | tr ' ' -):$marker"
}

stamp() {
  # stamp FILE: its size-mtime (through links), or "none": a key word for a file rebuilt or re-pointed
  stat -L -c %s-%Y "$1" 2>/dev/null || echo none
}

key_change() {
  # key_change MARKER KEY: the words of KEY its marker lacks, and the ones it had instead (a few each)
  local -a was now added=() gone=()
  local w
  read -ra was <<< "$(tr '\n' ' ' < "$1")"
  read -ra now <<< "$(printf '%s' "$2" | tr '\n' ' ')"
  for w in "${now[@]}"; do [[ " ${was[*]} " == *" $w "* ]] || added+=("$w"); done
  for w in "${was[@]}"; do [[ " ${now[*]} " == *" $w "* ]] || gone+=("$w"); done
  echo "now ${added[*]:0:3}${added[3]:+ ...}; was ${gone[*]:0:3}${gone[3]:+ ...}"
}

is_done() {
  # is_done MARKER KEY: true when MARKER exists and was written with the same KEY
  # (the arguments the work depended on). A different KEY means: redo the work.
  local marker=$1 key=$2
  [ -f "$marker" ] || return 1
  if ! same_key "$marker" "$key"; then
    log "$marker was made with other arguments; redoing it ($(key_change "$marker" "$key"))"
    return 1
  fi
  return 0
}

split_opts() {
  # split_opts ARRAY "OPTION STRING": ARRAY gets the string's words as a shell splits a command line:
  # quotes group ("--map-chars 'ş=ș ţ=ț'" is two words), nothing is expanded or run (xargs only
  # parses the quotes; printf prints each word). A recipe's *_opts variables go through this, not
  # through an unquoted $var, whose quotes would reach the program as characters.
  local -n _words=$1
  mapfile -d '' -t _words < <(printf '%s' "$2" | xargs -r printf '%s\0' 2>/dev/null)
  if ! wait $!; then  # xargs's status (bash >= 4.4 waits for a process substitution)
    log "ERROR: cannot split the options $2 (an unmatched quote?). Fix: quote each value once: --opt 'a b'"
    return 1
  fi
}

source_key() {
  # source_key SOURCE: "source=SOURCE" and what its weights are now, for .done keys: a checkpoint
  # file's cksum; a pretrained model's folder (whisper:DIR, hf:DIR) its files' names, sizes and times
  # (a model replaced in place retrains what was adapted from it); a hub id only its name.
  local src=$1 where=${1#*:}
  [ "$where" != "$src" ] || where=
  if [ -f "$src" ]; then
    echo "source=$src $(cksum < "$src")"
  elif [ -n "$where" ] && [ -e "$where" ]; then
    echo "source=$src weights=$(find -L "$where" -maxdepth 1 -type f -printf '%f %s %T@\n' | sort | cksum | tr ' ' -)"
  else
    echo "source=$src"
  fi
}

mark_done() {
  # mark_done MARKER KEY: called only after a stage's commands succeeded (set -e); written
  # to a temporary name and renamed, so a kill never leaves a half-written marker.
  mkdir -p "$(dirname "$1")"
  printf '%s' "$2" > "$1.partial"
  mv -f "$1.partial" "$1"
}

kill_tree() {
  # kill_tree PID...: each process and everything below it (children first), with SIGTERM.
  # Children from /proc (no procps needed), else pgrep.
  local pid child children
  for pid in "$@"; do
    children=$(cat /proc/"$pid"/task/*/children 2>/dev/null || pgrep -P "$pid" 2>/dev/null || true)
    for child in $children; do kill_tree "$child"; done
    kill "$pid" 2>/dev/null || true
  done
}

run_parallel() {
  # run_parallel NJ LOG_DIR STEP FUNC ARG...: runs "FUNC ARG" for every ARG, NJ at a time,
  # each in the background with its output in LOG_DIR/STEP.ARG.log and the machine's
  # cores shared out (OMP_NUM_THREADS = cores / min(NJ, jobs)). Waits for all; if any failed, names
  # each failed job and its log and returns 1. Independent trainings or decodings of a
  # stage run this way (2 one-thread jobs beat one two-thread job on a small CPU).
  local nj=$1 log_dir=$2 step=$3 func=$4 arg i failed=0
  shift 4
  local cores threads share=$nj
  cores=$(nproc 2>/dev/null || echo 1)
  [ "$#" -ge "$share" ] || share=$#  # fewer jobs than NJ: each gets a bigger share
  [ "$share" -ge 1 ] || share=1
  threads=$(( cores / share )); [ "$threads" -ge 1 ] || threads=1
  mkdir -p "$log_dir"
  # Each job writes its exit status to a file: bash forgets the status of a background job
  # that ended long before it is waited on ("wait: pid N is not a child of this shell", seen
  # after 54 trainings), which would call a finished job failed.
  local names=() rc_dir rc
  rc_dir=$(mktemp -d "$log_dir/.rc.XXXXXX")
  # Ctrl-C (or a kill) while the jobs run: say so on the console (the jobs' own tracebacks go to
  # their logs only), stop them, and leave the stage unmarked, so a rerun resumes it.
  # shellcheck disable=SC2064  # expanded now: these locals are gone when the trap runs
  trap "log 'Interrupted: the $step jobs are stopped (logs: $log_dir/$step.*.log); the same command again resumes them'; kill_tree \$(jobs -p); rm -rf '$rc_dir'; exit 130" INT TERM
  for arg in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "$nj" ]; do sleep 0.5; done
    # set -e again inside: the job stops at its first failing command, as when run alone.
    { set +e; (set -e; OMP_NUM_THREADS=$threads "$func" "$arg") > "$log_dir/$step.$arg.log" 2>&1
      echo $? > "$rc_dir/${#names[@]}"; } &
    names+=("$arg")
  done
  wait
  trap - INT TERM
  local warned
  for i in "${!names[@]}"; do
    rc=$(cat "$rc_dir/$i" 2>/dev/null || echo "no exit status")
    if [ "$rc" != 0 ]; then
      log "ERROR: $step job ${names[$i]} failed ($rc); see $log_dir/$step.${names[$i]}.log:"
      tail -n 5 "$log_dir/$step.${names[$i]}.log" 1>&2
      failed=1
    else
      # speechtl's warnings (a budget under one epoch, OOV reference words...) reach the console,
      # not only the job's log: the first 3 distinct ones of each job.
      warned=$(grep -E '^[0-9-]+ [0-9:,]+ WARNING ' "$log_dir/$step.${names[$i]}.log" | cut -d' ' -f4- | awk '!seen[$0]++' | head -n 3 || true)
      if [ -n "$warned" ]; then
        log "$step job ${names[$i]} warned (all in $log_dir/$step.${names[$i]}.log):"
        printf '    %s\n' "${warned//$'\n'/$'\n'    }"
      fi
    fi
  done
  rm -rf "$rc_dir"
  return $failed
}

reset_if_changed() {
  # reset_if_changed DIR KEY: DIR finished with other arguments (its .done holds
  # another KEY) is removed, so the stage starts afresh instead of "resuming" a
  # different run. An interrupted run (no .done yet) is kept, and training resumes it,
  # when it was started with this KEY (DIR/.started, written here); one started with
  # other arguments (another method's options, a tuned conf) is removed too: its
  # checkpoints are another run's.
  local dir=$1 key=$2
  if [ -f "$dir/.done" ]; then
    if ! same_key "$dir/.done" "$key"; then
      log "$dir: finished with other arguments ($(key_change "$dir/.done" "$key")): deleting it (its model," \
        "decodes and exports) to train it afresh"
      rm -rf "$dir"
    fi
  elif [ -f "$dir/.started" ] && ! same_key "$dir/.started" "$key"; then
    log "$dir: an interrupted run started with other arguments; starting it afresh"
    rm -rf "$dir"
  fi
  mkdir -p "$dir"
  printf '%s\n' "$key" > "$dir/.started"
}

corpus_or_download() {
  # corpus_or_download VAR DEFAULT CORPUS KEY WHAT: a recipe's stage 0. An empty $VAR
  # (no --corpus-dir) becomes DEFAULT, which `speechtl download CORPUS` fetches into
  # $dl_dir once, when stage 0 is in --stage/--stop-stage ($dl_dir/.done holds KEY).
  # $VAR ends as an absolute path when the directory exists. A relative path typed is the recipe
  # dir's, or else, if it exists there, $invoked_from's (where run.sh or make was started).
  local var=$1 default=$2 corpus=$3 key=$4 what=$5
  local dir=${!var}
  if [ -z "$dir" ]; then
    dir=$default
    if [ "${stage:?}" -le 0 ] && [ "${stop_stage:?}" -ge 0 ] && ! is_done "${dl_dir:?}/.done" "$key"; then
      log "Stage 0: download $what into $dl_dir"
      speechtl download "$corpus" --target-dir "$dl_dir"
      mark_done "$dl_dir/.done" "$key"
    fi
  fi
  if [ -n "${!var}" ] && [[ "$dir" != /* ]] && [ ! -e "$dir" ] && [ -n "${invoked_from:-}" ] \
    && [ -e "$invoked_from/$dir" ]; then
    # typed relative to where the command was given (the repo root for `make demo ARGS=...`)
    log "--${var//_/-} $dir read from $invoked_from"
    dir=$invoked_from/$dir
  fi
  dir=$(cd "$dir" 2>/dev/null && pwd || echo "$dir")
  printf -v "$var" '%s' "$dir"
}

system_names() {
  # system_names "METHODS" "AMOUNTS" "SEEDS" [UNIT]: one <method>_<amount><UNIT>[_s<seed>] a line, for
  # every amount, method and seed in that order (no seeds: no _s suffix, the conf's seed), the names
  # split_system reads back. mapfile -t systems < <(system_names "$methods" "$shots" "$seeds" shots)
  local methods=$1 amounts=$2 seeds=$3 unit=${4:-} a m s
  for a in $amounts; do
    for m in $methods; do
      for s in ${seeds:-conf}; do echo "${m}_$a$unit${seeds:+_s$s}"; done
    done
  done
}

# shellcheck disable=SC2034  # sys_method, sys_data and sys_seed are for the caller
split_system() {
  # split_system SYSTEM: sets sys_method, sys_data and sys_seed from <method>_<amount>[_s<seed>]
  # (finetune_5min_s2 -> finetune, 5min, 2; finetune_5min -> finetune, 5min and no seed).
  # Recipes' --seeds "1 2 3" name one system per seed this way: exp/<method>_<amount>_s<seed>.
  local s=$1
  sys_seed=
  if [[ $s =~ _s([0-9]+)$ ]]; then
    sys_seed=${BASH_REMATCH[1]}
    s=${s%_s*}
  fi
  sys_method=${s%_*}
  sys_data=${s##*_}
}

systems_of() {
  # systems_of METHOD SYSTEM...: those of the SYSTEMs (<method>_<amount>[_s<seed>]) whose method is METHOD.
  local m=$1 s
  shift
  for s in "$@"; do
    split_system "$s"
    [ "$sys_method" != "$m" ] || echo "$s"
  done
}

check_rounds() {
  # check_rounds N "ROUND_METHODS" "TAUGHT": --rounds is a whole number >= 1 and every round method
  # is taught (only a method with a teacher can be taught by its own last round).
  local m
  [[ $1 =~ ^[1-9][0-9]*$ ]] || { log "ERROR: --rounds is a whole number >= 1 (1: no extra rounds), not '$1'"; exit 1; }
  for m in $2; do
    case " $3 " in *" $m "*) ;; *)
      log "ERROR: --round-methods $m is not a taught method (--taught: $3). Fix: only a method with a teacher has rounds"; exit 1 ;;
    esac
  done
}

needs_pretrained() {
  # needs_pretrained OPTION VALUE: a set OPTION (e.g. --pretrained-tune) chooses options of the
  # --pretrained-methods, so it stops the recipe, naming the fix, when no --pretrained is given.
  [ -z "$2" ] || [ -n "$pretrained" ] || {
    log "ERROR: $1 '$2' chooses options of --pretrained-methods. Fix: add --pretrained whisper:PATH"
    exit 1
  }
}

pretrained_source() {
  # pretrained_source: a recipe's --pretrained (whisper:PATH_OR_ID or hf:PATH_OR_ID; empty: none).
  # Checks the kind, makes a local PATH absolute (jobs run from other dirs), and sets pt_kind
  # (whisper|hf) and pt_exp (exp/<kind>, where its systems train).
  pt_kind=${pretrained%%:*}
  # shellcheck disable=SC2034  # read by the recipe that calls this
  pt_exp=exp/$pt_kind
  [ -n "$pretrained" ] || return 0
  case $pt_kind in
    whisper | hf) ;;
    *) log "ERROR: --pretrained $pretrained: expected whisper:PATH_OR_ID or hf:PATH_OR_ID"; exit 1 ;;
  esac
  local loc=${pretrained#*:}
  if [ -e "$loc" ]; then pretrained=$pt_kind:$(cd "$(dirname "$loc")" && pwd)/$(basename "$loc"); fi
}

# A recipe's --stage/--stop-stage: numbers, in order (a typo ran nothing and exited 0).
for _gate in stage stop_stage; do
  if [ -n "${!_gate+x}" ] && ! [[ "${!_gate}" =~ ^-?[0-9]+$ ]]; then
    log "ERROR: --${_gate//_/-} '${!_gate}' is not a stage number"; exit 1
  fi
done
if [ -n "${stage+x}" ] && [ -n "${stop_stage+x}" ] && [ "$stage" -gt "$stop_stage" ]; then
  log "WARNING: --stage $stage is after --stop-stage $stop_stage: no stage runs"
elif [ -n "${stage+x}" ] && [ -f "$0" ]; then
  # the recipe's last stage: the highest of its gates ([ $stage -le N ]); past it nothing runs
  # shellcheck disable=SC2016  # the pattern matches the text "$stage"
  _last=$(grep -oE '\[ "?\$stage"? -le [0-9]+' "$0" | grep -oE '[0-9]+$' | sort -n | tail -n 1 || true)
  if [ -n "$_last" ] && [ "$stage" -gt "$_last" ]; then
    log "WARNING: --stage $stage is after this recipe's last stage, $_last: no stage runs"
  fi
fi
unset _gate _last

