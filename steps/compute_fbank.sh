#!/usr/bin/env bash
# Usage: steps/compute_fbank.sh [options] <manifest-dir> <fbank-dir>
# Writes <fbank-dir>/<prefix>_cuts_<split>.jsonl.gz and LilcomChunky feature files.
set -euo pipefail
nj=1
cmd=local
prefix=
splits="train test"
sampling_rate=16000
num_mel_bins=80
device=
speed_perturb=
perturb_splits=train
help_message="Usage: $0 [--nj N] [--cmd local] --prefix CORPUS [--splits 'train test'] [--sampling-rate 16000] [--num-mel-bins 80] [--speed-perturb '0.9 1.1'] [--perturb-splits train] <manifest-dir> <fbank-dir>
  --speed-perturb: factors for extra, resampled copies of the --perturb-splits (default train; Kaldi's 3-way perturbation)"
. "$(dirname "$0")/../utils/parse_options.sh"
[ $# -eq 2 ] && [ -n "$prefix" ] || { echo "$help_message" 1>&2; exit 1; }
# shellcheck disable=SC2086
speechtl compute-fbank --manifest-dir "$1" --output-dir "$2" --prefix "$prefix" --splits $splits \
  --sampling-rate "$sampling_rate" --num-mel-bins "$num_mel_bins" --nj "$nj" --cmd "$cmd" --device "$device" \
  --speed-perturb $speed_perturb --perturb-splits $perturb_splits
