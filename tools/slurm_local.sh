#!/usr/bin/env bash
# A one-node SLURM on localhost (munge + slurmctld + slurmd) for running soundlab.sweep job arrays for real.
#   tools/slurm_local.sh start    install Debian's slurm-wlm + munge if missing (root, apt-get; SLURM_LOCAL_INSTALL=0: never),
#                                 write $SLURM_LOCAL_DIR/slurm.conf and start the daemons; prints the export line
#   tools/slurm_local.sh stop     stop the daemons this script started (munged only if it started it)
#   tools/slurm_local.sh status   exit 0 when the controller answers and the node is up
#   tools/slurm_local.sh env      the line to paste: export SLURM_CONF=...
# cgroup-free (proctrack/linuxproc, task/none), no accounting; the node's real CPUs and memory (slurmd -C).
# Exit status 3 when SLURM is not installed and may not be installed here (the test fixture then skips).
set -euo pipefail
DIR=${SLURM_LOCAL_DIR:-/tmp/soundlab-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
PORT=${SLURM_LOCAL_PORT:-6817}   # slurmctld; slurmd listens on PORT+1

say() { echo "slurm_local: $*" >&2; }

installed() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; }

install() {
  installed && return 0
  if [[ ${SLURM_LOCAL_INSTALL:-1} == 0 || $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    say "SLURM (slurmctld, slurmd, sbatch, munged) is not installed; as root on Debian/Ubuntu: apt-get install slurm-wlm munge"
    exit 3
  fi
  say "installing slurm-wlm and munge with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

munge_ok() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  munge_ok && return 0
  [[ $(id -u) == 0 ]] || { say "munged is not running and only root can start it"; exit 3; }
  [[ -s /etc/munge/munge.key ]] || { mungekey --create >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 2>/dev/null; }
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
  if id munge >/dev/null 2>&1; then runuser -u munge -- /usr/sbin/munged; else /usr/sbin/munged --force; fi
  touch "$DIR/munged.ours"
  for _ in $(seq 50); do munge_ok && return 0; sleep 0.1; done
  say "munged did not come up"; exit 1
}

write_conf() {
  local host node
  host=$(hostname -s)
  node=$(slurmd -C | head -1)             # NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. ... RealMemory=..
  local mem=${node##*RealMemory=}; mem=${mem%% *}
  node=${node/RealMemory=$mem/RealMemory=$((mem * 9 / 10))}   # leave the OS a tenth
  mkdir -p "$DIR/state" "$DIR/spool"
  cat > "$CONF" <<EOF
# written by tools/slurm_local.sh: one node on localhost, no cgroups, no accounting
ClusterName=soundlab
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=600
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

up() { scontrol ping 2>/dev/null | grep -q 'is UP' && sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; }

start() {
  mkdir -p "$DIR"
  if [[ -s $CONF ]] && up; then say "already running"; echo "export SLURM_CONF=$CONF"; return 0; fi
  install
  [[ $(id -u) == 0 ]] || { say "slurmd must run as root"; exit 3; }
  start_munge
  write_conf
  slurmctld -f "$CONF" -i            # -i: ignore a stale saved state
  slurmd -f "$CONF"
  for _ in $(seq 150); do up && { say "up: $(sinfo -h -o '%N %c CPUs %m MB %t')"; echo "export SLURM_CONF=$CONF"; return 0; }; sleep 0.2; done
  say "SLURM did not come up in 30 s; see $DIR/slurmctld.log and $DIR/slurmd.log"
  tail -5 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
  stop; exit 1
}

stop_pid() {  # the daemon whose pid file is $1 (if it runs), then wait for it to go
  [[ -s $1 ]] || return 0
  local pid; pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$1"
}

stop() {
  [[ -d $DIR ]] || { say "nothing to stop ($DIR absent)"; return 0; }
  if [[ -s $CONF ]] && command -v squeue >/dev/null; then
    local ids; ids=$(squeue -h -o %A 2>/dev/null || true)
    [[ -z $ids ]] || scancel $ids 2>/dev/null || true
  fi
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  if [[ -e $DIR/munged.ours ]]; then
    local mp=/run/munge/munged.pid
    [[ -s $mp ]] && stop_pid "$mp"
    rm -f "$DIR/munged.ours"
  fi
  say "stopped"
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  status) up ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
