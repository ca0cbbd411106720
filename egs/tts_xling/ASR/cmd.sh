# Where jobs run. Steps that split work (--nj) hand their jobs to this runner.
#   local: a pool of processes on this machine.
export cmd="local"
