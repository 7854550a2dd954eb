#!/usr/bin/env bash
# Start a JobManager on this machine and one TaskManager per line of the workers file, as Flink's
# start-cluster.sh does.  "localhost" (or 127.0.0.1) workers start here; other hosts over ssh (the
# same checkout path and a `streamlet` on the PATH there).  Logs and pid files go to .run/.
#
#   scripts/start-cluster.sh [-c CONFIG] [-w WORKERS] [-s SLOTS] [-D key=value ...]
#
# Defaults: CONFIG=configs/streamlet.yaml, WORKERS=configs/workers, SLOTS from the config
# (taskmanager.numberOfTaskSlots).  -D overrides go to every process.  Stop with stop-cluster.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CONFIG=configs/streamlet.yaml
WORKERS=configs/workers
SLOTS=""
DEFINES=()
while [ $# -gt 0 ]; do
  case "$1" in
    -c|--config) CONFIG=$2; shift 2 ;;
    -w|--workers) WORKERS=$2; shift 2 ;;
    -s|--slots) SLOTS=$2; shift 2 ;;
    -D) DEFINES+=("-D" "$2"); shift 2 ;;
    -D*) DEFINES+=("-D" "${1#-D}"); shift ;;
    *) echo "usage: $0 [-c CONFIG] [-w WORKERS] [-s SLOTS] [-D key=value ...]" >&2; exit 2 ;;
  esac
done
STREAMLET=${STREAMLET:-"python -m streamlet"}
RUN=.run
mkdir -p "$RUN"

# the address TaskManagers use to reach the JobManager, from the effective configuration
conf() { $STREAMLET config --config "$CONFIG" "${DEFINES[@]}" | awk -v k="$1:" '$1 == k { print $2 }'; }
RPC_ADDR=$(conf jobmanager.rpc.address)
RPC_PORT=$(conf jobmanager.rpc.port)
REST_PORT=$(conf rest.port)

if [ -f "$RUN/jobmanager.pid" ] && kill -0 "$(cat "$RUN/jobmanager.pid")" 2>/dev/null; then
  echo "a jobmanager already runs (pid $(cat "$RUN/jobmanager.pid")); run scripts/stop-cluster.sh first" >&2
  exit 1
fi
echo "starting jobmanager (REST port $REST_PORT, RPC $RPC_ADDR:$RPC_PORT), log $RUN/jobmanager.log"
nohup $STREAMLET jobmanager --config "$CONFIG" "${DEFINES[@]}" > "$RUN/jobmanager.log" 2>&1 < /dev/null &
echo $! > "$RUN/jobmanager.pid"

SLOT_ARGS=()
[ -n "$SLOTS" ] && SLOT_ARGS=(--slots "$SLOTS")
i=0
while read -r host _ || [ -n "${host:-}" ]; do
  case "$host" in ''|\#*) continue ;; esac
  log="$RUN/taskmanager-$i.log"
  if [ "$host" = "localhost" ] || [ "$host" = "127.0.0.1" ]; then
    echo "starting taskmanager $i on $host, log $log"
    nohup $STREAMLET taskmanager --config "$CONFIG" --jobmanager "$RPC_ADDR:$RPC_PORT" "${SLOT_ARGS[@]}" \
      "${DEFINES[@]}" > "$log" 2>&1 < /dev/null &
    echo $! > "$RUN/taskmanager-$i.pid"
  else
    echo "starting taskmanager $i on $host over ssh, log $host:$ROOT/$log"
    # shellcheck disable=SC2029 - expanded here on purpose
    ssh -n "$host" "cd '$ROOT' && mkdir -p $RUN && nohup $STREAMLET taskmanager --config '$CONFIG' \
      --jobmanager '$RPC_ADDR:$RPC_PORT' ${SLOT_ARGS[*]} ${DEFINES[*]} > '$log' 2>&1 < /dev/null & echo \$! > '$RUN/taskmanager-$i.pid'"
    echo "$host" > "$RUN/taskmanager-$i.host"
  fi
  i=$((i + 1))
done < "$WORKERS"
echo "cluster starting: REST API at http://$(conf rest.address):$REST_PORT (streamlet list, streamlet submit ...)"
