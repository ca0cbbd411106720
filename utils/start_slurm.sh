#!/usr/bin/env bash
# Start a real one-node Slurm on this machine (Debian, as root) for tests and small runs:
# munged, mariadbd, slurmdbd, slurmctld, slurmd, in that order. Idempotent: exits at
# once when the node already answers. Facts that matter (slurm-wlm 22.05): linuxproc
# process tracking and task/none (no cgroups in containers), cons_tres with DefMemPerCPU
# (without it jobs run one at a time), and slurmdbd (without it a cancelled job makes
# submitit's result() hang).
#   utils/start_slurm.sh            # then: sinfo; sbatch ...
set -euo pipefail
case "${1:-}" in  # the header above is the help: --help must not start or install anything
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

if command -v sinfo >/dev/null && timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
  echo "[slurm] already running: $(sinfo -h -o '%P %D %T' | head -1)"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "[slurm] run as root (it installs packages and starts daemons)" 1>&2; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  echo "[slurm] installing slurm-wlm slurmdbd munge mariadb-server"
  pkgs=(slurm-wlm slurmdbd munge mariadb-server)
  # A fresh image may have no package lists yet: update once, then retry.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null; }
fi

host=$(hostname -s)
# GNU nproc honours OMP_NUM_THREADS (tests run with 1): count the CPUs without it, or a
# --cpus 2 job would wait forever on a 1-CPU node (PartitionConfig).
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
dbpass=speechtl-slurmdb
mkdir -p /etc/slurm /etc/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /run/mysqld
chown slurm:slurm /var/spool/slurmctld /var/log/slurm
chown munge:munge /run/munge /etc/munge
chown mysql:mysql /run/mysqld

# munge: one key, the daemon as its own user
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged

# mariadb for slurmdbd's accounting
if ! pgrep -x mariadbd >/dev/null; then
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
  (mariadbd --user=mysql >/var/log/slurm/mariadb.log 2>&1 &)
fi
for _ in $(seq 60); do mariadb -e "select 1" >/dev/null 2>&1 && break; sleep 0.5; done
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$dbpass';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$dbpass
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
CONF
chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=speechtl
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmdbd >/dev/null || /usr/sbin/slurmdbd
for _ in $(seq 60); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -i add cluster speechtl >/dev/null 2>&1 || true
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "[slurm] up: $(sinfo -h -o '%P %D %T %c cpus %m MB' | head -1)"
    exit 0
  fi
  sleep 1
done
echo "[slurm] the node did not come up; see /var/log/slurm/*.log" 1>&2
scontrol show node 1>&2 || true
exit 1
