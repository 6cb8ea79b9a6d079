# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
# Shared by infra/up.sh, infra/down.sh and infra/status.sh (sourced, not run): the settings with
# their defaults, every path of the local stack, and the checks that say whether a server is up.
# All state lives under one folder, so `rm -rf "$BUNDLEWISE_STATE_DIR"` is a full reset.

BW_INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly BW_INFRA_DIR

# set -e exits without a word; say which command failed and where (errtrace: in functions too).
set -o errtrace
report_failure() {
  printf '[infra] ERROR: exit %s from "%s" (%s line %s)\n' "$1" "$2" "$3" "$4" >&2
}
trap 'report_failure "$?" "$BASH_COMMAND" "${BASH_SOURCE[0]##*/}" "$LINENO"' ERR

# --- settings -----------------------------------------------------------------------------------
BW_HOST=127.0.0.1 # loopback only: nothing here has real credentials
BW_STATE_DIR=${BUNDLEWISE_STATE_DIR:-/var/tmp/bundlewise}
BW_PG_PORT=${BUNDLEWISE_PG_PORT:-5432}
BW_REDIS_PORT=${BUNDLEWISE_REDIS_PORT:-6379}
BW_KAFKA_PORT=${BUNDLEWISE_KAFKA_PORT:-9092}
BW_KAFKA_CONTROLLER_PORT=${BUNDLEWISE_KAFKA_CONTROLLER_PORT:-9093}
BW_EVENTS_PARTITIONS=${BUNDLEWISE_EVENTS_PARTITIONS:-6}
BW_TIMEOUT_S=${BUNDLEWISE_INFRA_TIMEOUT_S:-120}

BW_PG_USER=bundlewise
BW_PG_PASSWORD=bundlewise
BW_PG_DATABASE=bundlewise
BW_EVENTS_TOPIC=bundlewise.events.v1
BW_DEADLETTER_TOPIC=bundlewise.events.deadletter.v1

# --- paths --------------------------------------------------------------------------------------
BW_LOG_DIR=$BW_STATE_DIR/logs
BW_RUN_DIR=$BW_STATE_DIR/run
BW_PG_DATA=$BW_STATE_DIR/postgres
BW_PG_SOCKET_DIR=$BW_RUN_DIR/postgresql
BW_PG_LOG=$BW_LOG_DIR/postgres.log
BW_REDIS_DIR=$BW_STATE_DIR/redis
BW_REDIS_CONF=$BW_REDIS_DIR/redis.conf
BW_REDIS_PIDFILE=$BW_RUN_DIR/redis.pid
BW_REDIS_LOG=$BW_LOG_DIR/redis.log
BW_KAFKA_DIR=$BW_STATE_DIR/kafka
BW_KAFKA_DATA=$BW_KAFKA_DIR/data
BW_KAFKA_CONF=$BW_KAFKA_DIR/server.properties
BW_KAFKA_ADMIN_CONF=$BW_KAFKA_DIR/admin.properties
BW_KAFKA_PIDFILE=$BW_RUN_DIR/kafka.pid
BW_KAFKA_LOG=$BW_LOG_DIR/kafka.log
BW_KAFKA_POM=$BW_INFRA_DIR/kafka/pom.xml
BW_KAFKA_LOG4J=$BW_INFRA_DIR/kafka/log4j2.yaml
BW_LOCKFILE=$BW_RUN_DIR/infra.lock

# --- logging ------------------------------------------------------------------------------------
# Progress and errors go to stderr so that stdout carries only the table.
log() { printf '[infra] %s\n' "$*" >&2; }
warn() { printf '[infra] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[infra] ERROR: %s\n' "$*" >&2
  exit 1
}

# die_with_log MESSAGE LOGFILE: fail, showing the end of the server's log, which usually says why.
die_with_log() {
  printf '[infra] ERROR: %s\n[infra] see %s; its last lines:\n' "$1" "$2" >&2
  tail -n 25 "$2" 2>/dev/null | sed 's/^/    /' >&2 || true
  exit 1
}

check_settings() {
  local name value
  for name in BW_PG_PORT BW_REDIS_PORT BW_KAFKA_PORT BW_KAFKA_CONTROLLER_PORT; do
    value=${!name}
    if ! [[ $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
      die "${name/BW_/BUNDLEWISE_}='$value' is not a TCP port"
    fi
  done
  local ports="$BW_PG_PORT $BW_REDIS_PORT $BW_KAFKA_PORT $BW_KAFKA_CONTROLLER_PORT"
  [[ $(tr ' ' '\n' <<<"$ports" | sort -u | wc -l) == 4 ]] ||
    die "the four BUNDLEWISE_*_PORT settings must differ (now: $ports)"
  [[ $BW_EVENTS_PARTITIONS =~ ^[1-9][0-9]*$ ]] ||
    die "BUNDLEWISE_EVENTS_PARTITIONS='$BW_EVENTS_PARTITIONS' is not a positive integer"
  [[ $BW_TIMEOUT_S =~ ^[1-9][0-9]*$ ]] ||
    die "BUNDLEWISE_INFRA_TIMEOUT_S='$BW_TIMEOUT_S' is not a positive integer"
  [[ $BW_STATE_DIR == /* && $BW_STATE_DIR != *[[:space:]]* ]] ||
    die "BUNDLEWISE_STATE_DIR='$BW_STATE_DIR' must be an absolute path without spaces"
  # A Unix socket path is limited to 107 bytes; PostgreSQL's lives under the state folder.
  ((${#BW_PG_SOCKET_DIR} + 20 < 108)) ||
    die "BUNDLEWISE_STATE_DIR='$BW_STATE_DIR' is too long for PostgreSQL's Unix socket path"
}

# --- processes and ports ------------------------------------------------------------------------
# as_postgres CMD...: initdb and the server refuse to run as root, so root runs them as `postgres`.
as_postgres() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pid_from_pidfile PIDFILE PATTERN: print the pid if it is alive and its command line contains
# PATTERN (a recycled pid belonging to another program counts as stale); otherwise fail.
pid_from_pidfile() {
  local pid
  [[ -r $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
  printf '%s\n' "$pid"
}

# pid_running PID: the process exists and is not a zombie (an exited child that a non-reaping
# PID 1, common in containers, leaves behind still has a /proc entry).
pid_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# port_open PORT: something accepts TCP connections on the loopback port.
port_open() {
  (exec 3<>"/dev/tcp/$BW_HOST/$1") 2>/dev/null
}

# Newest Debian PostgreSQL (/usr/lib/postgresql/<ver>/bin), or the version that made the data dir:
# /usr/local/bin may hold other pg_ctl/initdb builds, which the Debian layout avoids.
pg_bin_dir() {
  local version dir
  if [[ -r $BW_PG_DATA/PG_VERSION ]]; then
    version=$(<"$BW_PG_DATA/PG_VERSION")
    if [[ -x /usr/lib/postgresql/$version/bin/pg_ctl ]]; then
      printf '%s\n' "/usr/lib/postgresql/$version/bin"
      return 0
    fi
  fi
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
    sort -V | tail -n 1)
  [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]] || return 1
  printf '%s\n' "$dir"
}

# --- up checks (also used by status.sh) ---------------------------------------------------------
postgres_is_up() {
  local bin
  bin=$(pg_bin_dir) || return 1
  [[ -f $BW_PG_DATA/postmaster.pid ]] || return 1
  as_postgres "$bin/pg_ctl" status -D "$BW_PG_DATA" >/dev/null 2>&1 || return 1
  "$bin/pg_isready" -q -h "$BW_HOST" -p "$BW_PG_PORT" -t 2
}

redis_is_up() {
  pid_from_pidfile "$BW_REDIS_PIDFILE" redis-server >/dev/null || return 1
  [[ $(redis-cli -h "$BW_HOST" -p "$BW_REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

# Process alive and broker port open; up.sh additionally lists topics through the broker.
kafka_is_up() {
  pid_from_pidfile "$BW_KAFKA_PIDFILE" kafka.Kafka >/dev/null || return 1
  port_open "$BW_KAFKA_PORT"
}

# server_state NAME: "up" or "down".
server_state() {
  if "${1}_is_up"; then echo up; else echo down; fi
}

# print_table locations|status: one row per server, on stdout: where it listens, its log file and
# either its data folder (locations) or whether it is up (status).
print_table() {
  local mode=$1 row name address logfile datadir
  local rows=(
    "postgres postgresql://$BW_HOST:$BW_PG_PORT/$BW_PG_DATABASE $BW_PG_LOG $BW_PG_DATA"
    "redis redis://$BW_HOST:$BW_REDIS_PORT $BW_REDIS_LOG $BW_REDIS_DIR"
    "kafka $BW_HOST:$BW_KAFKA_PORT $BW_KAFKA_LOG $BW_KAFKA_DATA"
  )
  if [[ $mode == status ]]; then
    printf '%-9s %-5s %-38s %s\n' NAME STATE ADDRESS LOG
  else
    printf '%-9s %-38s %-41s %s\n' NAME ADDRESS LOG DATA
  fi
  for row in "${rows[@]}"; do
    read -r name address logfile datadir <<<"$row"
    if [[ $mode == status ]]; then
      printf '%-9s %-5s %-38s %s\n' "$name" "$(server_state "$name")" "$address" "$logfile"
    else
      printf '%-9s %-38s %-41s %s\n' "$name" "$address" "$logfile" "$datadir"
    fi
  done
}
