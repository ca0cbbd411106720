#!/usr/bin/env bash
# Usage: steps/report.sh [options] <results.tsv> <RESULTS.md>
# Writes RESULTS.md from results.tsv (a table per test set: a row per method and amount, a
# column per decoding) and, with --plot, the data-efficiency plot (WER against labelled data
# of --test-set and --decoding; speechtl report), then prints results.tsv as a table.
set -euo pipefail
title=Results
plot=
test_set="test"
decoding=hlg
baselines=  # every row is paired with these methods (empty: speechtl report's scratch and finetune; add a teacher, e.g. whisper-lp-ft)
help_message="Usage: $0 [--title Results] [--plot exp/plots/data_efficiency.png] [--test-set test] [--decoding hlg] [--baselines 'scratch finetune'] <results.tsv> <RESULTS.md>"
steps=$(cd "$(dirname "$0")" && pwd)
. "$steps/../utils/parse_options.sh"
. "$steps/../utils/common.sh"
[ $# -eq 2 ] || { echo "$help_message" 1>&2; exit 1; }
results=$1 results_md=$2
# shellcheck disable=SC2086
speechtl report --results "$results" --results-md "$results_md" --title "$title" ${baselines:+--baselines $baselines} \
  ${plot:+--plot "$plot" --test-set "$test_set" --decoding "$decoding"}
log "Results ($results; $results_md${plot:+; $plot}):"
column -t -s $'\t' "$results" 2>/dev/null || cat "$results"
