#!/usr/bin/env bash
# Stop what start-cluster.sh started: the TaskManagers first, then the JobManager (SIGTERM, then
# SIGKILL after a grace period).  Uses the pid files in .run/.
set -uo pipefail
cd "$(dirname "$0")/.."
RUN=.run
GRACE=${GRACE:-10}

# alive and not a zombie waiting to be reaped by init (nohup'd processes are re-parented)
alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != "Z" ]; }

stop_local() {  # pid-file name
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq 1 $((GRACE * 10))); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "pid $pid did not stop within ${GRACE}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null
    fi
    echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
  fi
  rm -f "$pidfile"
}

shopt -s nullglob
for pidfile in "$RUN"/taskmanager-*.pid; do
  hostfile=${pidfile%.pid}.host
  if [ -f "$hostfile" ]; then
    host=$(cat "$hostfile")
    ssh -n "$host" "cd '$(pwd)' && kill -TERM \$(cat '$pidfile') 2>/dev/null; rm -f '$pidfile'" \
      && echo "stopped $(basename "$pidfile" .pid) on $host"
    rm -f "$hostfile" "$pidfile"
  else
    stop_local "$pidfile"
  fi
done
stop_local "$RUN/jobmanager.pid"
