#!/usr/bin/env bash
# Stops the services `make demo` left running: SIGTERM to each pidfile's process, then waits.
set -euo pipefail
run_dir=${BUNDLEWISE_STATE_DIR:-/var/tmp/bundlewise}/run/services
shopt -s nullglob
for pidfile in "$run_dir"/*.pid; do
  pid=$(cat "$pidfile")
  name=$(basename "$pidfile" .pid)
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name did not stop in 30s; killing it" >&2
      kill -KILL "$pid"
    else
      echo "stopped $name"
    fi
  fi
  rm -f "$pidfile"
done
