#!/usr/bin/env bash
# Starts the local stack on 127.0.0.1 -- PostgreSQL, Redis and a single-node Kafka (KRaft) --
# installing what is missing, and waits until each answers; then prints where each runs.
# Idempotent: a server that is already up is left alone, so running it twice is harmless.
# Settings (environment): BUNDLEWISE_STATE_DIR (/var/tmp/bundlewise), BUNDLEWISE_PG_PORT (5432),
# BUNDLEWISE_REDIS_PORT (6379), BUNDLEWISE_KAFKA_PORT (9092), BUNDLEWISE_KAFKA_CONTROLLER_PORT
# (9093), BUNDLEWISE_EVENTS_PARTITIONS (6), BUNDLEWISE_INFRA_TIMEOUT_S (120).
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- installation -------------------------------------------------------------------------------
BW_APT_UPDATED=0

# apt_install PACKAGE...: install from Debian; refresh the package lists only when apt does not
# know a package yet (a fresh image has none), since an update costs a network round trip.
apt_install() {
  ((EUID == 0)) || die "missing packages $*; install them (as root: apt-get install -y $*)"
  local package
  for package in "$@"; do
    if ((BW_APT_UPDATED == 0)) &&
      ! apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      log "apt-get update"
      apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
      BW_APT_UPDATED=1
    fi
  done
  log "apt-get install -y $*"
  # Waits for the dpkg lock instead of failing when another install is running.
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "$@" >&2
  # Debian's package starts its own cluster on port 5432 where services may start; ours replaces it.
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters --no-header | awk '$4 == "online" {print $1, $2}' | while read -r version cluster; do
      log "stopping Debian's default cluster $version/$cluster (port $BW_PG_PORT is ours)"
      pg_ctlcluster "$version" "$cluster" stop || true
    done
  fi
}

install_missing() {
  local packages=()
  pg_bin_dir >/dev/null || packages+=(postgresql)
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    packages+=(redis-server)
  fi
  command -v java >/dev/null || packages+=(default-jre-headless)
  command -v mvn >/dev/null || packages+=(maven)
  command -v runuser >/dev/null || packages+=(util-linux)
  if ((${#packages[@]} > 0)); then
    apt_install "${packages[@]}"
  fi
  pg_bin_dir >/dev/null || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
  if ((EUID == 0)) && ! id -u postgres >/dev/null 2>&1; then
    log "creating system user postgres"
    useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
      --shell /usr/sbin/nologin postgres
  fi
}

# --- configuration files ------------------------------------------------------------------------
# write_config FILE SERVER RUNNING(yes|no): stdin becomes FILE. A running server keeps the settings
# it started with, so changed settings (another port) must not be written under it unnoticed.
write_config() {
  local file=$1 server=$2 running=$3
  cat >"$file.new"
  if [[ $running == yes ]] && ! cmp -s "$file.new" "$file"; then
    rm -f "$file.new"
    die "$server is running with other settings than these (see $file); run infra/down.sh" \
      "(it stops servers whatever the ports), then infra/up.sh"
  fi
  mv "$file.new" "$file"
}

# --- state folder -------------------------------------------------------------------------------
# make_dirs DIR...: create each missing folder and its missing parents, mode 755 whatever the
# umask, so the postgres user can traverse down to its own folders.
make_dirs() {
  local target dir missing
  for target in "$@"; do
    missing=()
    dir=$target
    while [[ ! -d $dir ]]; do
      missing=("$dir" "${missing[@]}")
      dir=$(dirname "$dir")
    done
    for dir in "${missing[@]}"; do
      mkdir "$dir"
      chmod 755 "$dir"
    done
  done
}

prepare_state_dir() {
  make_dirs "$BW_STATE_DIR" "$BW_LOG_DIR" "$BW_RUN_DIR" "$BW_REDIS_DIR" "$BW_KAFKA_DATA" \
    "$BW_PG_SOCKET_DIR"
  if ((EUID == 0)); then
    chown postgres: "$BW_PG_SOCKET_DIR"
    as_postgres test -x "$BW_PG_SOCKET_DIR" ||
      die "user postgres cannot reach $BW_STATE_DIR; make its parents traversable (chmod o+x)"
  fi
}

# --- PostgreSQL ---------------------------------------------------------------------------------
init_postgres() {
  local bin=$1 tmp
  [[ -e $BW_PG_DATA ]] &&
    die "$BW_PG_DATA exists but holds no PostgreSQL cluster (no PG_VERSION); move it away"
  # initdb into a temporary folder renamed at the end, so an interrupted initdb never counts.
  tmp=$BW_PG_DATA.initdb
  rm -rf "$tmp"
  make_dirs "$tmp"
  ((EUID != 0)) || chown postgres: "$tmp"
  log "initdb $BW_PG_DATA"
  as_postgres "$bin/initdb" -D "$tmp" --encoding=UTF8 --no-locale --auth-local=peer \
    --auth-host=scram-sha-256 >>"$BW_PG_LOG" 2>&1 ||
    die_with_log "initdb failed" "$BW_PG_LOG"
  # The settings live in their own file, rewritten by every up.sh, so a port change applies at
  # the next start without editing postgresql.conf by hand.
  echo "include_if_exists = 'bundlewise.conf'" >>"$tmp/postgresql.conf"
  mv "$tmp" "$BW_PG_DATA"
}

write_postgres_conf() {
  local conf=$BW_PG_DATA/bundlewise.conf
  write_config "$conf" postgres "$1" <<EOF
# Written by infra/up.sh on every run; edit infra/up.sh instead.
listen_addresses = '$BW_HOST'
port = $BW_PG_PORT
unix_socket_directories = '$BW_PG_SOCKET_DIR'
password_encryption = 'scram-sha-256'
EOF
  ((EUID != 0)) || chown postgres: "$conf"
}

start_postgres() {
  local bin running=no
  bin=$(pg_bin_dir)
  touch "$BW_PG_LOG"
  ((EUID != 0)) || chown postgres: "$BW_PG_LOG"
  [[ -f $BW_PG_DATA/PG_VERSION ]] || init_postgres "$bin"
  as_postgres "$bin/pg_ctl" status -D "$BW_PG_DATA" >/dev/null 2>&1 && running=yes
  write_postgres_conf "$running"
  if [[ $running == yes ]]; then
    log "postgresql already running"
  else
    port_open "$BW_PG_PORT" &&
      die "port $BW_PG_PORT is taken by another program; stop it or set BUNDLEWISE_PG_PORT"
    log "starting postgresql on $BW_HOST:$BW_PG_PORT"
    # pg_ctl removes a stale postmaster.pid itself; 9>&- keeps the up.sh lock out of the server.
    as_postgres "$bin/pg_ctl" start -D "$BW_PG_DATA" -l "$BW_PG_LOG" -w -t "$BW_TIMEOUT_S" \
      >/dev/null 9>&- || die_with_log "postgresql did not start" "$BW_PG_LOG"
  fi
  ensure_postgres_database "$bin"
  PGPASSWORD=$BW_PG_PASSWORD PGCONNECT_TIMEOUT=5 "$bin/psql" -X -q -h "$BW_HOST" \
    -p "$BW_PG_PORT" -U "$BW_PG_USER" -d "$BW_PG_DATABASE" -tAc 'select 1' >/dev/null ||
    die_with_log "postgresql does not accept $BW_PG_USER over TCP" "$BW_PG_LOG"
}

# Role and database, created or corrected on every run (same password, same rights).
ensure_postgres_database() {
  local bin=$1
  as_postgres "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$BW_PG_SOCKET_DIR" -p "$BW_PG_PORT" \
    -d postgres >/dev/null <<EOF
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$BW_PG_USER') THEN
    CREATE ROLE $BW_PG_USER LOGIN CREATEDB PASSWORD '$BW_PG_PASSWORD';
  ELSE
    ALTER ROLE $BW_PG_USER LOGIN CREATEDB PASSWORD '$BW_PG_PASSWORD';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $BW_PG_DATABASE OWNER $BW_PG_USER'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$BW_PG_DATABASE')
\gexec
EOF
}

# --- Redis --------------------------------------------------------------------------------------
write_redis_conf() {
  write_config "$BW_REDIS_CONF" redis "$1" <<EOF
# Written by infra/up.sh on every run; edit infra/up.sh instead.
bind $BW_HOST
port $BW_REDIS_PORT
# Bound to loopback only, so protected mode (which refuses clients without a password) adds nothing.
protected-mode no
daemonize yes
pidfile $BW_REDIS_PIDFILE
logfile $BW_REDIS_LOG
dir $BW_REDIS_DIR
# The append-only file keeps every write across restarts, not just the last snapshot.
appendonly yes
appendfsync everysec
EOF
}

start_redis() {
  local deadline started running=no
  pid_from_pidfile "$BW_REDIS_PIDFILE" redis-server >/dev/null && running=yes
  write_redis_conf "$running"
  if [[ $running == yes ]]; then
    log "redis already running"
  else
    rm -f "$BW_REDIS_PIDFILE"
    port_open "$BW_REDIS_PORT" &&
      die "port $BW_REDIS_PORT is taken by another program; stop it or set BUNDLEWISE_REDIS_PORT"
    log "starting redis on $BW_HOST:$BW_REDIS_PORT"
    # Returns once the daemon has forked; the daemon writes the pidfile.
    redis-server "$BW_REDIS_CONF" 9>&- || die_with_log "redis did not start" "$BW_REDIS_LOG"
  fi
  # Redis answers LOADING while it replays the append-only file, so wait for PONG.
  deadline=$((SECONDS + BW_TIMEOUT_S))
  started=$SECONDS
  until redis_is_up; do
    # The daemon writes its pidfile within moments of forking; no live pid after 5 s means it died.
    if ((SECONDS - started > 5)) &&
      ! pid_from_pidfile "$BW_REDIS_PIDFILE" redis-server >/dev/null; then
      die_with_log "redis exited while starting" "$BW_REDIS_LOG"
    fi
    ((SECONDS < deadline)) ||
      die_with_log "redis did not answer on $BW_HOST:$BW_REDIS_PORT within ${BW_TIMEOUT_S}s" \
        "$BW_REDIS_LOG"
    sleep 0.2
  done
}

# --- Kafka --------------------------------------------------------------------------------------
BW_KAFKA_CLASSPATH=

# The broker's jars, resolved by Maven into ~/.m2 only when the pom changed (the classpath file is
# keyed by the pom's sha256) or a jar went missing from the cache.
resolve_kafka_classpath() {
  local key cpfile jar jars output
  key=$(sha256sum "$BW_KAFKA_POM" | cut -c1-16)
  cpfile=$BW_KAFKA_DIR/classpath-$key.txt
  if [[ -s $cpfile ]]; then
    # The here-string supplies the final newline that Maven leaves out (read fails without one).
    IFS=: read -r -a jars <<<"$(<"$cpfile")"
    for jar in "${jars[@]}"; do
      [[ -f $jar ]] || {
        rm -f "$cpfile"
        break
      }
    done
  fi
  if [[ ! -s $cpfile ]]; then
    log "resolving Kafka jars with Maven (infra/kafka/pom.xml)"
    # Maven's output is shown only on failure (with -q, Maven 3.8 still prints bare colour codes).
    if ! output=$(mvn -q -B -f "$BW_KAFKA_POM" dependency:build-classpath \
      -Dmdep.outputFile="$cpfile.tmp" 2>&1); then
      printf '%s\n' "$output" >&2
      die "mvn could not resolve infra/kafka/pom.xml (Maven Central unreachable?)"
    fi
    mv "$cpfile.tmp" "$cpfile"
    find "$BW_KAFKA_DIR" -maxdepth 1 -name 'classpath-*.txt' ! -name "classpath-$key.txt" -delete
  fi
  BW_KAFKA_CLASSPATH=$(<"$cpfile")
}

# kafka_tool CLASS ARG...: a short-lived Kafka command-line tool; small heap and quick JIT since
# each run lasts seconds. Its log lines go to stderr at WARN.
kafka_tool() {
  java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$BW_KAFKA_LOG4J" -Dbundlewise.kafka.log.level=WARN \
    -cp "$BW_KAFKA_CLASSPATH" "$@"
}

write_kafka_conf() {
  write_config "$BW_KAFKA_CONF" kafka "$1" <<EOF
# Written by infra/up.sh on every run; edit infra/up.sh instead.
# One node that is both broker and KRaft controller (no ZooKeeper).
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$BW_HOST:$BW_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$BW_HOST:$BW_KAFKA_PORT,CONTROLLER://$BW_HOST:$BW_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$BW_HOST:$BW_KAFKA_PORT,\
CONTROLLER://$BW_HOST:$BW_KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$BW_KAFKA_DATA

# A single node can only hold one replica of anything.
offsets.topic.replication.factor=1
# The group coordinator's topic is created when the first group forms; one partition instead of
# 50 makes that first join take a moment instead of seconds on a small machine.
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Topics are created by infra/up.sh with the partition counts the services expect; a typo in a
# topic name should fail, not create a new topic.
auto.create.topics.enable=false
num.partitions=6
# A year, not forever: replays read old events, and a dev disk is not infinite.
log.retention.hours=8760
# No reason to wait for more consumers to join on a dev broker; it only slows tests down.
group.initial.rebalance.delay.ms=0
EOF
  cat >"$BW_KAFKA_ADMIN_CONF" <<EOF
# Client settings of the tools infra/up.sh runs: fail within seconds while the broker boots.
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# Format the log dir once; meta.properties marks it done, so data survives restarts.
format_kafka_storage() {
  local cluster_id
  [[ -f $BW_KAFKA_DATA/meta.properties ]] && return 0
  cluster_id=$(kafka_tool kafka.tools.StorageTool random-uuid) ||
    die "kafka StorageTool random-uuid failed"
  log "formatting Kafka storage $BW_KAFKA_DATA (cluster $cluster_id)"
  # --standalone: this node alone is the whole (dynamic) controller quorum.
  kafka_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$BW_KAFKA_CONF" \
    >>"$BW_KAFKA_LOG" 2>&1 || die_with_log "kafka storage format failed" "$BW_KAFKA_LOG"
}

start_kafka() {
  local pid port running=no
  resolve_kafka_classpath
  pid_from_pidfile "$BW_KAFKA_PIDFILE" kafka.Kafka >/dev/null && running=yes
  write_kafka_conf "$running"
  if [[ $running == yes ]]; then
    log "kafka already running"
    return 0
  fi
  rm -f "$BW_KAFKA_PIDFILE"
  for port in "$BW_KAFKA_PORT" "$BW_KAFKA_CONTROLLER_PORT"; do
    port_open "$port" && die "port $port is taken by another program; stop it or set" \
      "BUNDLEWISE_KAFKA_PORT / BUNDLEWISE_KAFKA_CONTROLLER_PORT"
  done
  format_kafka_storage
  log "starting kafka on $BW_HOST:$BW_KAFKA_PORT (controller :$BW_KAFKA_CONTROLLER_PORT)"
  # setsid: its own session, so the broker outlives this shell and the CI step that ran it.
  # Without job control, setsid does not fork, so $! is the JVM's pid.
  setsid java -Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$BW_KAFKA_LOG4J" \
    -cp "$BW_KAFKA_CLASSPATH" kafka.Kafka "$BW_KAFKA_CONF" \
    </dev/null >>"$BW_KAFKA_LOG" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$BW_KAFKA_PIDFILE"
}

# The broker answers once a topic listing through it succeeds; the output (every topic with its
# partition count) then says which topics still need creating.
wait_for_kafka_and_create_topics() {
  local deadline listing topic partitions existing
  deadline=$((SECONDS + BW_TIMEOUT_S))
  until port_open "$BW_KAFKA_PORT" &&
    listing=$(kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server \
      "$BW_HOST:$BW_KAFKA_PORT" --command-config "$BW_KAFKA_ADMIN_CONF" --describe \
      --exclude-internal 2>/dev/null); do
    pid_from_pidfile "$BW_KAFKA_PIDFILE" kafka.Kafka >/dev/null ||
      die_with_log "kafka exited while starting" "$BW_KAFKA_LOG"
    ((SECONDS < deadline)) ||
      die_with_log "kafka did not answer on $BW_HOST:$BW_KAFKA_PORT within ${BW_TIMEOUT_S}s" \
        "$BW_KAFKA_LOG"
    sleep 1
  done
  for topic in "$BW_EVENTS_TOPIC:$BW_EVENTS_PARTITIONS" "$BW_DEADLETTER_TOPIC:1"; do
    partitions=${topic##*:}
    topic=${topic%:*}
    # Summary lines read "Topic: NAME  TopicId: ID  PartitionCount: N  ...".
    existing=$(awk -v want="$topic" '/PartitionCount:/ {
        for (i = 1; i < NF; i++) {
          if ($i == "Topic:") name = $(i + 1)
          if ($i == "PartitionCount:") count = $(i + 1)
        }
        if (name == want) print count
      }' <<<"$listing")
    if [[ -z $existing ]]; then
      log "creating topic $topic ($partitions partitions)"
      kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BW_HOST:$BW_KAFKA_PORT" \
        --command-config "$BW_KAFKA_ADMIN_CONF" --create --if-not-exists --topic "$topic" \
        --partitions "$partitions" --replication-factor 1 >/dev/null ||
        die_with_log "could not create topic $topic" "$BW_KAFKA_LOG"
    elif [[ $existing != "$partitions" ]]; then
      # Changing it would move keys to other partitions, so it is left to a person.
      warn "topic $topic has $existing partitions, expected $partitions; to start over:" \
        "infra/down.sh && rm -rf $BW_KAFKA_DATA && infra/up.sh"
    fi
  done
}

# --- main ---------------------------------------------------------------------------------------
main() {
  local started=$SECONDS
  check_settings
  install_missing
  prepare_state_dir
  # One up.sh or down.sh at a time; fd 9 is closed for every server started below.
  exec 9>"$BW_LOCKFILE"
  flock 9
  # Kafka boots slowest, so it starts first and boots while PostgreSQL and Redis come up.
  start_kafka
  start_postgres
  start_redis
  wait_for_kafka_and_create_topics
  log "stack up in $((SECONDS - started))s"
  print_table locations
}

main "$@"
