#!/usr/bin/env bash
# TracSeq: run the platform locally, or run the whole test suite.
#
#   ./deploy-phase7.sh local   start PostgreSQL if needed, build, serve http://127.0.0.1:8080
#   ./deploy-phase7.sh test    start what the tests need, then run every test
#   ./deploy-phase7.sh db      only create the platform's database role and .env.local
#
# Both install what is missing (PostgreSQL from apt) and start what is stopped.
# Secrets (the database role's password, the registry token) are generated on the first
# run into .env.local (git-ignored, mode 600); later runs read it.
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
PG_PORT=${PG_PORT:-5432}

# psql as the PostgreSQL superuser on database $1: over TCP when the server lets postgres
# in without a password (trust, as on a developer box or CI: PG_ADMIN_URL is set),
# otherwise over the Unix socket as the postgres system user (peer authentication). The
# postgres role is never given a password.
admin_psql() {
  local db=$1; shift
  if [ -n "${PG_ADMIN_URL:-}" ]; then
    psql "$PG_ADMIN_URL/$db" -X -v ON_ERROR_STOP=1 "$@"
  else
    as_root runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -p "$PG_PORT" -d "$db" "$@"
  fi
}

# Makes sure a PostgreSQL server answers on 127.0.0.1:$PG_PORT and that we can act as its
# superuser; exports PG_ADMIN_URL (server URL without a database) when that works over
# TCP, and leaves it empty when only the Unix socket lets postgres in.
ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! command -v pg_isready >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
  fi
  if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
    local version
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || { apt_install postgresql; version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1); }
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break; sleep 1; done
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || die "PostgreSQL did not start on $PG_HOST:$PG_PORT"
  fi
  PG_ADMIN_URL=${PG_ADMIN_URL-"postgres://postgres@$PG_HOST:$PG_PORT"}
  if [ -n "$PG_ADMIN_URL" ] && ! psql -w "$PG_ADMIN_URL/postgres" -XqAtc 'SELECT 1' >/dev/null 2>&1; then
    # A stock cluster asks for a password over TCP: do the superuser's work over the
    # Unix socket instead, rather than giving postgres a password.
    PG_ADMIN_URL=
  fi
  admin_psql postgres -qAtc 'SELECT 1' >/dev/null ||
    die "cannot act as the PostgreSQL superuser, over TCP ($PG_HOST:$PG_PORT) or over the Unix socket"
  export PG_ADMIN_URL
}

# Local secrets, generated on the first run and read by later ones; git-ignored, mode 600.
# Delete a line (or the file) to have it generated again. `set -a; . ./.env.local; set +a`
# loads it into a shell to run tracseq by hand.
ENV_FILE=${TRACSEQ_ENV_FILE:-.env.local}
DB_ROLE=${TRACSEQ_DB_ROLE:-tracseq}   # the platform's own login role
DB_NAME=${TRACSEQ_DB_NAME:-tracseq}   # its database, owned by that role
TEST_ROLE=${DB_ROLE}_test             # the test suite's role, when postgres has no TCP login

random_secret() { openssl rand -hex 24 2>/dev/null || od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

# The value of KEY in the env file, or nothing.
env_value() {
  [ -f "$ENV_FILE" ] || return 0
  sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1
}

# Sets KEY=VALUE in the env file, keeping its other lines; the file is only ever readable
# by its owner.
env_set() {
  local key=$1 value=$2 tmp
  [ -f "$ENV_FILE" ] && grep -qxF "$key=$value" "$ENV_FILE" && return 0
  tmp=$(umask 077; mktemp "$ENV_FILE.XXXXXX")
  if [ -f "$ENV_FILE" ]; then
    KEY=$key VALUE=$value awk -F= '$1 == ENVIRON["KEY"] { if (!done) print ENVIRON["KEY"] "=" ENVIRON["VALUE"]; done = 1; next }
      { print } END { if (!done) print ENVIRON["KEY"] "=" ENVIRON["VALUE"] }' "$ENV_FILE" >"$tmp"
  else
    printf '# TracSeq local secrets, written by deploy-phase7.sh. Never commit this file.\n%s=%s\n' "$key" "$value" >"$tmp"
  fi
  chmod 600 "$tmp"
  mv "$tmp" "$ENV_FILE"
}

# The password in a postgres:// URL of the env file, when that URL logs in as $2.
url_password() {
  env_value "$1" | sed -n "s#^postgres://$2:\([^@]*\)@.*#\1#p"
}

# ensure_role ROLE URL_KEY DATABASE ATTRIBUTES: a login role with ATTRIBUTES whose
# connection URL (to DATABASE, password included) is kept in the env file under URL_KEY.
# The password in the file is kept; with none, one is generated and the role's password
# is reset to it. Passwords go to psql on standard input, never on a command line.
ensure_role() {
  local role=$1 key=$2 db=$3 attributes=$4 password
  password=$(url_password "$key" "$role")
  if [ -z "$password" ]; then
    password=$(random_secret)
    [ -n "$password" ] || die "cannot generate a password (openssl or /dev/urandom)"
  fi
  if [ "$(admin_psql postgres -qAtc "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != 1 ]; then
    log "creating the database role $role (password kept in $ENV_FILE)"
    printf "CREATE ROLE \"%s\" LOGIN %s PASSWORD '%s';\n" "$role" "$attributes" "$password" | admin_psql postgres -q
  elif [ -z "$(url_password "$key" "$role")" ] ||
    ! PGPASSWORD=$password psql -w -h "$PG_HOST" -p "$PG_PORT" -U "$role" -d postgres -XqAtc 'SELECT 1' >/dev/null 2>&1; then
    log "setting a new password for the database role $role (kept in $ENV_FILE)"
    printf "ALTER ROLE \"%s\" LOGIN %s PASSWORD '%s';\n" "$role" "$attributes" "$password" | admin_psql postgres -q
  fi
  env_set "$key" "postgres://$role:$password@$PG_HOST:$PG_PORT/$db"
}

# The platform's database role and database, and the env file with DATABASE_URL and the
# registry token. The role may log in and owns its database (it runs the migrations
# there); it is not a superuser and cannot create databases or roles.
ensure_platform_env() {
  ensure_role "$DB_ROLE" DATABASE_URL "$DB_NAME" "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
  local owner
  owner=$(admin_psql postgres -qAtc "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$DB_NAME'")
  if [ -z "$owner" ]; then
    log "creating the database $DB_NAME, owned by $DB_ROLE"
    admin_psql postgres -qc "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_ROLE\""
  elif [ "$owner" != "$DB_ROLE" ]; then
    # A database from before the role existed: hand it and the platform's tables over.
    log "handing the database $DB_NAME (owned by $owner) over to $DB_ROLE"
    admin_psql postgres -qc "ALTER DATABASE \"$DB_NAME\" OWNER TO \"$DB_ROLE\""
    admin_psql "$DB_NAME" -q <<SQL
DO \$\$
DECLARE statement text;
BEGIN
  FOR statement IN
    SELECT format('ALTER %s %s OWNER TO %I',
                  CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                 WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                  c.oid::regclass, '$DB_ROLE')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
      -- sequences owned by a column follow their table
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, '$DB_ROLE')
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public'
  LOOP
    EXECUTE statement;
  END LOOP;
END
\$\$;
SQL
  fi
  [ -n "$(env_value SCHEMA_REGISTRY_TOKEN)" ] || {
    log "generating the schema registry's token (kept in $ENV_FILE)"
    env_set SCHEMA_REGISTRY_TOKEN "$(random_secret)"
  }
}

# Exports the env file's settings, except those already set in the environment.
load_env() {
  local key
  for key in DATABASE_URL SCHEMA_REGISTRY_TOKEN; do
    if [ -z "${!key:-}" ]; then export "$key=$(env_value "$key")"; fi
  done
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

SCHEMATHESIS_VERSION=4.32.5   # the API fuzzer web/tests/schemathesis.rs runs (PyPI)

# schemathesis on PATH, or in ~/.local/bin (where `pip install --user` puts it); the
# test looks in both (or at $SCHEMATHESIS).
ensure_schemathesis() {
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
  export PATH="$HOME/.local/bin:$PATH"
  if command -v schemathesis >/dev/null 2>&1 &&
    [ "$(schemathesis --version 2>/dev/null)" = "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    return
  fi
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  log "installing schemathesis $SCHEMATHESIS_VERSION (pip)"
  local package="schemathesis==$SCHEMATHESIS_VERSION"
  # A Debian python3 refuses pip installs outside a venv (PEP 668) unless told otherwise.
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check "$package" ||
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$package"
  command -v schemathesis >/dev/null 2>&1 || die "schemathesis did not install for python3"
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
  ensure_platform_env
  load_env
  ensure_toolchain
  command -v curl >/dev/null 2>&1 || apt_install curl
  export TRACSEQ_LISTEN=${TRACSEQ_LISTEN:-127.0.0.1:8080}
  export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:9092}
  export SCHEMA_REGISTRY_URL=${SCHEMA_REGISTRY_URL:-http://127.0.0.1:8081}
  log "building tracseq (release)"
  cargo build --release --locked -p web --bin tracseq
  start_broker
  start_registry
  log "creating the topics (3 partitions each)"
  ./target/release/tracseq topics
  ensure_local_admin
  log "TracSeq: http://$TRACSEQ_LISTEN  (Ctrl-C to stop; the broker and registry keep running)"
  exec ./target/release/tracseq serve
}

# Every page and API call needs a login. On the first run there is no account at all:
# create an administrator with a random password, print it, and keep it in the
# git-ignored env file so later runs can say where it is. Change it at /account; more
# accounts at /admin/users or with `tracseq user create`.
ensure_local_admin() {
  local out password
  out=$(./target/release/tracseq user create --if-no-users --username admin --name "Local administrator" --role admin) ||
    die "could not create the first administrator"
  password=$(printf '%s\n' "$out" | sed -n 's/^password: //p')
  if [ -n "$password" ]; then
    env_set TRACSEQ_LOCAL_ADMIN_PASSWORD "$password"
    log "created the first administrator: log in as 'admin' with password $password (also kept in $ENV_FILE; change it at /account)"
  elif [ -n "$(env_value TRACSEQ_LOCAL_ADMIN_PASSWORD)" ]; then
    log "log in as 'admin'; its first password is in $ENV_FILE (TRACSEQ_LOCAL_ADMIN_PASSWORD) unless it was changed since"
  else
    log "log in with your account; an administrator adds accounts at /admin/users or with: ./target/release/tracseq user create --username NAME --name 'Full Name' --role technician"
  fi
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
  ensure_schemathesis   # web/tests/schemathesis.rs fuzzes the JSON API with it
  # Tests create one database each on this server: as postgres over TCP when the server
  # allows it without a password (trust), otherwise as a role of the tests' own that may
  # create databases (and so drop the ones it created) and nothing more. The platform's
  # role stays unable to create databases.
  if [ -n "$PG_ADMIN_URL" ]; then
    export DATABASE_URL="$PG_ADMIN_URL/postgres"
  else
    ensure_role "$TEST_ROLE" TEST_DATABASE_URL postgres "NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    DATABASE_URL=$(env_value TEST_DATABASE_URL)
    export DATABASE_URL
  fi
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
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
  local) cmd_local ;;
  test) cmd_test ;;
  db) ensure_postgres; ensure_platform_env; log "database role $DB_ROLE and $ENV_FILE are ready" ;;
  -h|--help|help|"") usage ;;
  deploy|status|logs|restart|cleanup)
    die "'$1' manages the Docker Compose stack, which is not part of this release yet; use 'local'" ;;
  *) usage; exit 2 ;;
esac
