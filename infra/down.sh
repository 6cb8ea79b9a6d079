#!/usr/bin/env bash
# Stops the local stack started by infra/up.sh -- Kafka, Redis, PostgreSQL -- cleanly, keeping
# all their data under BUNDLEWISE_STATE_DIR. Idempotent: nothing running is not an error.
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BW_KAFKA_STOP_TIMEOUT_S=60

# A controlled shutdown (SIGTERM) lets the broker close its logs, so the next start skips log
# recovery; only a broker stuck past the timeout is killed.
stop_kafka() {
  local pid deadline
  if ! pid=$(pid_from_pidfile "$BW_KAFKA_PIDFILE" kafka.Kafka); then
    rm -f "$BW_KAFKA_PIDFILE"
    log "kafka not running"
    return 0
  fi
  log "stopping kafka (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + BW_KAFKA_STOP_TIMEOUT_S))
  while pid_running "$pid" && ((SECONDS < deadline)); do
    sleep 0.5
  done
  if pid_running "$pid"; then
    warn "kafka did not stop within ${BW_KAFKA_STOP_TIMEOUT_S}s; killing it (see $BW_KAFKA_LOG)"
    kill -KILL "$pid" 2>/dev/null || true
    while pid_running "$pid"; do sleep 0.2; done
  fi
  rm -f "$BW_KAFKA_PIDFILE"
}

# SHUTDOWN SAVE writes a final snapshot and fsyncs the append-only file before exiting.
stop_redis() {
  local pid
  if ! pid=$(pid_from_pidfile "$BW_REDIS_PIDFILE" redis-server); then
    rm -f "$BW_REDIS_PIDFILE"
    log "redis not running"
    return 0
  fi
  log "stopping redis (pid $pid)"
  if ! redis-cli -h "$BW_HOST" -p "$BW_REDIS_PORT" shutdown save >/dev/null 2>&1; then
    # Not answering on the configured port (settings changed?): SIGTERM also saves and exits.
    kill -TERM "$pid" 2>/dev/null || true
  fi
  while pid_running "$pid"; do sleep 0.2; done
  rm -f "$BW_REDIS_PIDFILE"
}

# -m fast: roll back open transactions and disconnect clients, but still a clean checkpoint.
stop_postgres() {
  local bin
  if ! bin=$(pg_bin_dir) || [[ ! -f $BW_PG_DATA/postmaster.pid ]] ||
    ! as_postgres "$bin/pg_ctl" status -D "$BW_PG_DATA" >/dev/null 2>&1; then
    log "postgres not running"
    return 0
  fi
  log "stopping postgres"
  as_postgres "$bin/pg_ctl" stop -D "$BW_PG_DATA" -m fast -w -t 60 >/dev/null ||
    die_with_log "postgres did not stop" "$BW_PG_LOG"
}

main() {
  check_settings
  if [[ -d $BW_RUN_DIR ]]; then
    # Waits for an up.sh that is still starting servers, then stops what it started.
    exec 9>"$BW_LOCKFILE"
    flock 9
  fi
  stop_kafka
  stop_redis
  stop_postgres
}

main "$@"
