#!/usr/bin/env bash
# A one-node SLURM for CI (Debian's slurmctld/slurmd/munge), with 2 fake GPUs as generic resources.
#   bash .ci/slurm.sh up     install if needed, write the config, start munge, slurmctld, slurmd
#   bash .ci/slurm.sh down   cancel jobs and stop the daemons
set -euo pipefail
SCRATCH=${LUMOS_SLURM_SCRATCH:-/tmp/lumos-slurm}
HOST=$(hostname -s)

up() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  fi
  # a controller not running yet starts clean: jobs saved by an earlier session are not this one's
  pgrep -x slurmctld >/dev/null || rm -rf "$SCRATCH/state"
  mkdir -p "$SCRATCH"/{state,spool,log} /etc/slurm /run/munge
  touch "$SCRATCH/fakegpu0" "$SCRATCH/fakegpu1"
  chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || \
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  munge -n | unmunge >/dev/null
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=lumos-ci
SlurmctldHost=$HOST
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MinJobAge=3600
KillWait=20
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldLogFile=$SCRATCH/log/slurmctld.log
SlurmdLogFile=$SCRATCH/log/slurmd.log
SlurmctldPidFile=$SCRATCH/slurmctld.pid
SlurmdPidFile=$SCRATCH/slurmd.pid
NodeName=$HOST CPUs=$(nproc) RealMemory=16000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
  echo "NodeName=$HOST Name=gpu File=$SCRATCH/fakegpu[0-1]" > /etc/slurm/gres.conf
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 30); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    case "$state" in
      idle*|mix*|alloc*) echo "slurm up: node $HOST $state"; return 0 ;;
      drain*|down*|inval*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  echo "slurm did not come up; see $SCRATCH/log" >&2
  return 1
}

down() {
  scancel --user="$(id -un)" 2>/dev/null || true
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  echo "slurm down"
}

"${1:?usage: slurm.sh up|down}"
