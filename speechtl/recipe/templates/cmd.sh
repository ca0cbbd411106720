# shellcheck shell=bash
# Where jobs run. Steps that split work (--nj) hand their jobs to this runner.
#   local: a pool of processes on this machine.
#   slurm: one Slurm job array per step (through submitit), options as Kaldi's slurm.pl:
#     export cmd="slurm --partition debug --time 60 --mem 4G --cpus 1 --gpus 0"
#   (utils/start_slurm.sh starts a one-node Slurm on this machine to try it.)
# ./run.sh --cmd "slurm ..." overrides it for one run.
export cmd="local"
