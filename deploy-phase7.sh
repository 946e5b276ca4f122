#!/usr/bin/env bash
# TracSeq: run the platform locally, or run the whole test suite.
#
#   ./deploy-phase7.sh local   start PostgreSQL if needed, build, serve http://127.0.0.1:8080
#   ./deploy-phase7.sh test    start what the tests need, then run every test
#
# Both install what is missing (PostgreSQL from apt) and start what is stopped.
# Settings: DATABASE_URL, TRACSEQ_LISTEN, TRACSEQ_LOG_FORMAT (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing $* (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PG_HOST=127.0.0.1
PG_PORT=5432

# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 and that we can log in as
# postgres over TCP; exports PG_ADMIN_URL (server URL without a database).
ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! command -v pg_isready >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
  fi
  if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || { apt_install postgresql; version=$(ls /etc/postgresql | sort -V | tail -n 1); }
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break; sleep 1; done
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || die "PostgreSQL did not start on $PG_HOST:$PG_PORT"
  fi
  PG_ADMIN_URL=${PG_ADMIN_URL:-"postgres://postgres@$PG_HOST:$PG_PORT"}
  if ! psql "$PG_ADMIN_URL/postgres" -XqAtc 'SELECT 1' >/dev/null 2>&1; then
    # A stock cluster asks for a password over TCP: give the postgres role one.
    log "setting a local password for the postgres role (TCP login)"
    as_root su postgres -c "psql -XqAtc \"ALTER ROLE postgres PASSWORD 'postgres'\"" >/dev/null
    PG_ADMIN_URL="postgres://postgres:postgres@$PG_HOST:$PG_PORT"
    psql "$PG_ADMIN_URL/postgres" -XqAtc 'SELECT 1' >/dev/null || die "cannot log in to PostgreSQL as postgres"
  fi
  export PG_ADMIN_URL
}

ensure_toolchain() {
  command -v cargo >/dev/null 2>&1 || die "cargo (Rust 1.95+) is required: https://rustup.rs"
  local missing=()
  command -v cc >/dev/null 2>&1 || missing+=(build-essential)
  # librdkafka is built from source (rdkafka's cmake-build) and wants cmake and curl headers.
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  [ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -e /usr/include/curl/curl.h ] || missing+=(libcurl4-openssl-dev)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# The local Kafka-protocol broker (tansu). Built once with cargo and kept in ~/.cargo/bin.
TANSU_VERSION=0.6.0
ensure_tansu() {
  if ! command -v tansu >/dev/null 2>&1; then
    log "installing the tansu broker $TANSU_VERSION (cargo install, takes 10-15 minutes once)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore
  fi
}

# Confluent's Python client with its Schema Registry Avro deserializer (PyPI), for the
# test in which a third-party consumer reads our topic (kafka/tests/third_party.rs).
# Pinned: 2.16.1's Avro extras want a certifi release that does not exist.
CONFLUENT_KAFKA_VERSION=2.16.0
PY_KAFKA_CHECK='import confluent_kafka, fastavro, confluent_kafka.schema_registry.avro'
ensure_python_kafka() {
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
  python3 -c "$PY_KAFKA_CHECK" >/dev/null 2>&1 && return
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  log "installing confluent-kafka $CONFLUENT_KAFKA_VERSION with its Avro and Schema Registry extras (pip)"
  local package="confluent-kafka[avro,schemaregistry]==$CONFLUENT_KAFKA_VERSION"
  # A Debian python3 refuses pip installs outside a venv (PEP 668) unless told otherwise.
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check "$package" ||
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$package"
  python3 -c "$PY_KAFKA_CHECK" || die "confluent-kafka did not install for python3"
}

RUN_DIR=target/local   # logs and pids of the services started in the background

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # what, seconds, command...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq 1 "$((seconds * 5))"); do "$@" && return 0; sleep 0.2; done
  die "$what did not come up; see $RUN_DIR/"
}

# The Kafka-protocol broker on 127.0.0.1:9092, in memory (a restart empties it).
start_broker() {
  ensure_tansu
  if port_open 9092; then log "a Kafka broker already answers on 127.0.0.1:9092"; return; fi
  mkdir -p "$RUN_DIR"
  log "starting the Kafka broker (tansu) on 127.0.0.1:9092; log: $RUN_DIR/tansu.log"
  nohup tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ >"$RUN_DIR/tansu.log" 2>&1 &
  echo $! >"$RUN_DIR/tansu.pid"
  wait_for "the Kafka broker" 30 port_open 9092
}

# The schema registry (tracseq schema-registry) on 127.0.0.1:8081.
start_registry() {
  if curl -sf http://127.0.0.1:8081/config >/dev/null 2>&1; then log "a schema registry already answers on 127.0.0.1:8081"; return; fi
  mkdir -p "$RUN_DIR"
  log "starting the schema registry on 127.0.0.1:8081; log: $RUN_DIR/schema-registry.log"
  nohup ./target/release/tracseq schema-registry >"$RUN_DIR/schema-registry.log" 2>&1 &
  echo $! >"$RUN_DIR/schema-registry.pid"
  wait_for "the schema registry" 30 curl -sf http://127.0.0.1:8081/config -o /dev/null
}

cmd_local() {
  ensure_postgres
  ensure_toolchain
  command -v curl >/dev/null 2>&1 || apt_install curl
  export DATABASE_URL=${DATABASE_URL:-"$PG_ADMIN_URL/tracseq"}
  export TRACSEQ_LISTEN=${TRACSEQ_LISTEN:-127.0.0.1:8080}
  export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:9092}
  export SCHEMA_REGISTRY_URL=${SCHEMA_REGISTRY_URL:-http://127.0.0.1:8081}
  log "building tracseq (release)"
  cargo build --release --locked -p web --bin tracseq
  start_broker
  start_registry
  log "creating the topics (3 partitions each)"
  ./target/release/tracseq topics
  log "TracSeq: http://$TRACSEQ_LISTEN  (Ctrl-C to stop; the broker and registry keep running)"
  exec ./target/release/tracseq serve
}

# The browser tests drive Debian's Chromium through ChromeDriver.
ensure_browser() {
  if ! command -v chromedriver >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then
    apt_install chromium chromium-driver
  fi
}

cmd_test() {
  ensure_postgres
  ensure_toolchain
  ensure_browser
  ensure_tansu   # the Kafka tests start brokers of their own with it
  ensure_python_kafka   # a third-party consumer test reads the topic with it
  # Tests create one database each on this server.
  export DATABASE_URL="$PG_ADMIN_URL/postgres"
  log "dropping databases left by earlier test runs"
  psql "$DATABASE_URL" -XqAt -c "SELECT datname FROM pg_database WHERE datname LIKE 'tracseq_test_%'" |
    while read -r db; do psql "$DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || true; done
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy"
  cargo clippy --locked --workspace --all-targets -- -D warnings
  log "cargo test (unit, integration against PostgreSQL and a Kafka broker, HTTP, headless browser)"
  cargo test --locked --workspace
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
  local) cmd_local ;;
  test) cmd_test ;;
  -h|--help|help|"") usage ;;
  deploy|status|logs|restart|cleanup)
    die "'$1' manages the Docker Compose stack, which is not part of this release yet; use 'local'" ;;
  *) usage; exit 2 ;;
esac
