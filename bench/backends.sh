#!/usr/bin/env bash
# mall loadgen on a split shop (one process per service), once on the embedded defaults
# and once on PostgreSQL + Kafka, with the resident memory of every process at idle and
# at the end of the load. Needs a release build, PostgreSQL on MALL_BENCH_PG and a Kafka
# broker on MALL_BENCH_KAFKA (defaults: this machine's PostgreSQL, tansu on 29092).
#   bench/backends.sh [seconds] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_OF_LOAD=${1:-20}
CONCURRENCY=${2:-16}
PG=${MALL_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
KAFKA=${MALL_BENCH_KAFKA:-127.0.0.1:29092}
MALL="${CARGO_TARGET_DIR:-target}/release/mall"
export MALL_RATE_LIMIT_IP_PER_SEC=100000 MALL_RATE_LIMIT_IP_BURST=100000 MALL_LOG=warn
export MALL_RATE_LIMIT_LOGIN_PER_MIN=100000 MALL_RATE_LIMIT_LOGIN_BURST=100000

# Resident memory (MB) of the supervisor's children, one "service=MB" per process.
rss() {
  for pid_file in "$1"/run/*.pid; do
    local service pid
    service=$(basename "$pid_file" .pid); pid=$(cat "$pid_file")
    printf '%s=%.1f ' "$service" "$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$pid/status")"
  done
  echo
}

run() { # name, then extra environment
  local name=$1; shift
  local dir; dir=$(mktemp -d)
  local port=$((24000 + RANDOM % 4000))
  env "$@" MALL_NEW_USER_PASSWORD=loadadmin1 "$MALL" admin create-user --init --admin \
    --email load@12st.mall --name Load --data-dir "$dir" >/dev/null
  env "$@" "$MALL" up --split --base-port "$port" --data-dir "$dir" >"$dir/up.log" 2>&1 &
  local shop=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
  sleep 5
  echo "== $name"
  echo "idle RSS MB: $(rss "$dir")"
  MALL_ADMIN_PASSWORD=loadadmin1 "$MALL" loadgen --url "http://127.0.0.1:$port" \
    --admin-email load@12st.mall --concurrency "$CONCURRENCY" \
    --duration-secs "$SECONDS_OF_LOAD" --out "$dir/loadgen" | grep -E "confirmed orders|saga latency|errors" || true
  echo "RSS MB after the load: $(rss "$dir")"
  env "$@" "$MALL" admin check --data-dir "$dir" | tail -2
  kill "$shop"; wait "$shop" || true
}

run "embedded (SQLite files, embedded log)"
NS=bench$RANDOM
run "PostgreSQL + Kafka" MALL_DB="$PG/$NS" MALL_BUS="kafka://$KAFKA/$NS"
