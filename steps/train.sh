#!/usr/bin/env bash
# Usage: steps/train.sh [options] <config.yaml> <lang-dir> <train-cuts> <exp-dir>
# Trains with speechtl's one Trainer; writes epoch-N.pt, avg-K.pt, final.pt, log/, tensorboard/.
set -euo pipefail
method=scratch
source_checkpoint=
unlabelled_cuts=
options=
valid_cuts=
num_procs=1
cmd=local
help_message="Usage: $0 [--cmd local] [--method scratch] [--source-checkpoint SRC.pt] [--unlabelled-cuts CUTS] [--options 'k=v'] [--valid-cuts CUTS] [--num-procs N] <config.yaml> <lang-dir> <train-cuts> <exp-dir>
  --source-checkpoint: the source model (architecture for every method, weights for transfer methods)
  --unlabelled-cuts: unlabelled target audio (used by dann, mmd, coral, reweight, kd, pseudo-label, ssl)
  --options 'k=v k2=v2': method options over the config's (e.g. teacher=exp/finetune_5min/final.pt)
  --num-procs N: DDP training in N processes on this node (torchrun; one per GPU, or gloo on CPU)
  --cmd 'slurm ...': run the training as one job of that runner (torchrun inside the allocation;
                     ask for --cpus/--gpus to match --num-procs); logs: <exp-dir>/log/train.0.log"
. "$(dirname "$0")/../utils/parse_options.sh"
[ $# -eq 4 ] || { echo "$help_message" 1>&2; exit 1; }
extra=()
[ -n "$valid_cuts" ] && extra+=(--valid-cuts "$valid_cuts")
[ -n "$source_checkpoint" ] && extra+=(--source-checkpoint "$source_checkpoint")
[ -n "$unlabelled_cuts" ] && extra+=(--unlabelled-cuts "$unlabelled_cuts")
for kv in $options; do extra+=(--option "$kv"); done
launcher=(speechtl)
[ "$num_procs" -gt 1 ] && launcher=(torchrun --standalone --nproc-per-node "$num_procs" -m speechtl.cli)
args=(train --config "$1" --lang-dir "$2" --train-cuts "$3" --exp-dir "$4" --method "$method" "${extra[@]}")
if [ "${cmd%% *}" = local ]; then
  "${launcher[@]}" "${args[@]}"
else
  mkdir -p "$4/log"
  speechtl run-job --cmd "$cmd" --log-dir "$4/log" --name train -- "${launcher[@]}" "${args[@]}"
fi
