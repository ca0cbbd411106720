#!/usr/bin/env bash
# Usage: steps/train.sh [options] <config.yaml> <lang-dir> <train-cuts> <exp-dir>
#        steps/train.sh --task classify-digit|classify-speaker [options] <config.yaml> <train-cuts> <exp-dir>
# Trains with speechtl's one Trainer; writes epoch-N.pt, avg-K.pt, final.pt, log/, tensorboard/.
set -euo pipefail
task=asr
method=scratch
source_checkpoint=
unlabelled_cuts=
options=
sets=
init_param=
freeze_param=
valid_cuts=
num_procs=1
cmd=local
help_message="Usage: $0 [--task asr] [--cmd local] [--method scratch] [--source-checkpoint SRC.pt] [--unlabelled-cuts CUTS] [--options 'k=v'] [--sets 'k=v'] [--init-param 'PATH:SRC:DST'] [--freeze-param 'PREFIX'] [--valid-cuts CUTS] [--num-procs N] <config.yaml> <lang-dir> <train-cuts> <exp-dir>
  --source-checkpoint: the source model (architecture for every method, weights for transfer methods)
  --unlabelled-cuts: unlabelled target audio (used by dann, mmd, coral, reweight, kd, pseudo-label, ssl)
  --options 'k=v k2=v2': method options over the config's (e.g. teacher=exp/finetune_5min/final.pt)
  --sets 'k=v k2=v2': train options over the config's (e.g. seed=2: one run of a recipe's --seeds)
  --init-param 'PATH[:SRC[:DST[:EXCLUDE,...]]] ...': after the method's start, copy PATH's tensors
                     SRC.* into the model's DST.* (ESPnet's --init_param), e.g. exp/other/final.pt:encoder:encoder
  --freeze-param 'PREFIX ...': parameters under these name prefixes do not train, whatever the method
  --task classify-digit|classify-speaker: an utterance classifier (pooled encoder + linear; no lang dir)
  --num-procs N: DDP training in N processes on this node (torchrun; one per GPU, or gloo on CPU)
  --cmd 'slurm ...': run the training as one job of that runner (torchrun inside the allocation;
                     ask for --cpus/--gpus to match --num-procs); logs: <exp-dir>/log/train.0.log
  --cmd 'slurm --nodes N ...': DDP across N nodes: srun starts one torchrun agent per node (c10d
                     rendezvous on the job's first node), each with --num-procs processes;
                     other nodes log to <exp-dir>/log/train.0.taskK.log"
. "$(dirname "$0")/../utils/parse_options.sh"
if [ "$task" = asr ]; then
  [ $# -eq 4 ] || { echo "$help_message" 1>&2; exit 1; }
  config=$1 units=(--lang-dir "$2"); shift 2
else
  [ $# -eq 3 ] || { echo "$help_message" 1>&2; exit 1; }
  config=$1 units=(); shift 1
fi
train_cuts=$1 exp_dir=$2
loopback_check="import socket; s = socket.create_server(('127.0.0.1', 0)); socket.create_connection(s.getsockname(), 2)"
extra=()
[ -n "$valid_cuts" ] && extra+=(--valid-cuts "$valid_cuts")
[ -n "$source_checkpoint" ] && extra+=(--source-checkpoint "$source_checkpoint")
[ -n "$unlabelled_cuts" ] && extra+=(--unlabelled-cuts "$unlabelled_cuts")
for kv in $options; do extra+=(--option "$kv"); done
for kv in $sets; do extra+=(--set "$kv"); done
set -f  # split at spaces, never globbed: a path may hold [ * ?
for spec in $init_param; do extra+=(--init-param "$spec"); done
for prefix in $freeze_param; do extra+=(--freeze-param "$prefix"); done
set +f
if [ "$num_procs" -gt 1 ] && [ "${cmd%% *}" = local ] && ! python -c "$loopback_check" 2>/dev/null; then
  # DDP's rendezvous and gloo talk TCP over 127.0.0.1; a network namespace made with
  # `unshare -n` has its loopback down. Train rather than fail (the run differs from N processes).
  echo "$0: WARNING: no TCP on 127.0.0.1 (loopback down?): training in 1 process instead of $num_procs;" \
    "bring it up (ip link set lo up) for DDP" 1>&2
  num_procs=1
fi
launcher=(speechtl)
[ "$num_procs" -gt 1 ] && launcher=(torchrun --standalone --nproc-per-node "$num_procs" -m speechtl.cli)
args=(train --task "$task" --config "$config" "${units[@]}" --train-cuts "$train_cuts" --exp-dir "$exp_dir" --method "$method" "${extra[@]}")
if [ "${cmd%% *}" = local ]; then
  "${launcher[@]}" "${args[@]}"
else
  mkdir -p "$exp_dir/log"
  speechtl run-job --cmd "$cmd" --log-dir "$exp_dir/log" --name train -- "${launcher[@]}" "${args[@]}"
fi
