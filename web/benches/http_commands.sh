#!/usr/bin/env bash
# Commands through HTTP with the whole pipeline running: `wrk` registers samples on
# POST /api/samples (no Idempotency-Key, generated barcodes; a technician's API token)
# against a `tracseq serve`
# with its own database, Kafka-protocol broker (tansu, in memory) and schema registry.
#
#   web/benches/http_commands.sh [path/to/tracseq] [seconds]
#
# Prints, for 16 and 64 connections: requests/s, p50 / p95 / p99 latency (ms), non-2xx.
set -euo pipefail
BIN=${1:-target/release/tracseq}
SECONDS_PER_RUN=${2:-20}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
PG=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432}
DB="tracseq_httpbench_$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BROKER_PORT=$(free_port); REGISTRY_PORT=$(free_port); APP_PORT=$(free_port)
WORK=$(mktemp -d)
cleanup() {
  kill "${APP_PID:-}" "${REG_PID:-}" "${BROKER_PID:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PG/postgres" -Xqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_port() { for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; return 1; }

tansu broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" \
  --storage-engine memory://tansu/ >"$WORK/broker.log" 2>&1 & BROKER_PID=$!
wait_port "$BROKER_PORT"
export DATABASE_URL="$PG/$DB" KAFKA_BROKERS="127.0.0.1:$BROKER_PORT" RUST_LOG=warn
export SCHEMA_REGISTRY_LISTEN="127.0.0.1:$REGISTRY_PORT" SCHEMA_REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT"
export TRACSEQ_LISTEN="127.0.0.1:$APP_PORT" TRACSEQ_DB_MAX_CONNECTIONS=40
"$BIN" schema-registry >"$WORK/registry.log" 2>&1 & REG_PID=$!
wait_port "$REGISTRY_PORT"
"$BIN" topics >"$WORK/topics.log" 2>&1
# Every API call needs a login: a technician's API token, as an instrument would use.
echo "benchmark administrator password" |
  "$BIN" user create --username bench.admin --name "Bench admin" --role admin --password-stdin >/dev/null
TOKEN=$("$BIN" token create --name wrk --role technician --by bench.admin)
"$BIN" serve >"$WORK/app.log" 2>&1 & APP_PID=$!
wait_port "$APP_PORT"
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$APP_PORT/health/ready" >/dev/null && break; sleep 0.2; done

cat >"$WORK/register.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
cat >>"$WORK/register.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"sample_type": "plasma", "volume_ul": "250", "temperature_zone": "-80"}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("requests_per_s=%.0f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f non_2xx=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
# Warm-up, then the measured runs.
wrk -t2 -c16 -d3s -s "$WORK/register.lua" "http://127.0.0.1:$APP_PORT/api/samples" >/dev/null
for connections in 16 64; do
  printf 'connections=%s ' "$connections"
  wrk -t2 -c"$connections" -d"${SECONDS_PER_RUN}s" -s "$WORK/register.lua" \
    "http://127.0.0.1:$APP_PORT/api/samples" | tail -n 1
done
