#!/usr/bin/env bash
# Start Rigetti's qvm and quilc as servers on their default ports (qvm 5000, quilc 5555),
# bound to loopback, for `--backend rigetti_qvm` (both) and `rigetti_<qpu>` (quilc).
# Needs the qvm and quilc binaries (Rigetti's Forest SDK) on PATH. A server already
# listening on its port is left alone. Logs and pids go to $RIGETTI_SERVER_DIR
# (default .rigetti-servers/); stop them with: kill "$(cat .rigetti-servers/qvm.pid)" ...
set -euo pipefail

dir=${RIGETTI_SERVER_DIR:-.rigetti-servers}
missing=()
for bin in qvm quilc; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if ((${#missing[@]})); then
  echo "start-rigetti-servers: ${missing[*]} not on PATH; install Rigetti's Forest SDK" \
    "(qvm and quilc binaries) first" >&2
  exit 1
fi
mkdir -p "$dir"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {  # name port command...
  local name=$1 port=$2
  shift 2
  if listening "$port"; then
    echo "$name: already listening on 127.0.0.1:$port"
    return
  fi
  local args=(-S)
  if "$1" --help 2>&1 | grep -q -- "--host"; then args+=(--host 127.0.0.1); fi
  nohup "$@" "${args[@]}" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
  for _ in $(seq 100); do
    if listening "$port"; then
      echo "$name: listening on 127.0.0.1:$port (pid $(cat "$dir/$name.pid"), log $dir/$name.log)"
      return
    fi
    sleep 0.1
  done
  echo "start-rigetti-servers: $name did not open port $port; see $dir/$name.log" >&2
  exit 1
}

start qvm 5000 qvm
start quilc 5555 quilc
