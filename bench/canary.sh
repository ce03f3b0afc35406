#!/usr/bin/env bash
# A canary at the gateway, measured on one machine in one run (figures in the README):
#   1. GET /api/orders/{id} through the gateway with wrk: with no canary; with a canary of
#      order running that this customer does not meet (the cost of choosing and counting);
#      and with one they meet (a second order process answers);
#   2. a canary of order that fails every request (MALL_FAULTS), started under
#      `mall loadgen`: the time from its first failed answer to the rollback, and how many
#      requests it answered.
# Needs wrk (apt-get install wrk). Builds the release binary.
# Usage: bench/canary.sh [seconds per wrk run, default 10] [connections, default 32]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-32}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q --locked
mall="${CARGO_TARGET_DIR:-target}/release/mall"

work=$(mktemp -d)
base=$((20000 + RANDOM % 30000))
instances=()
cleanup() {
  for pid in "${instances[@]}" "${shop:-}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export MALL_LOG=warn MALL_RATE_LIMIT_IP_PER_SEC=1000000 MALL_RATE_LIMIT_IP_BURST=1000000 \
  MALL_RATE_LIMIT_CUSTOMER_PER_SEC=1000000 MALL_RATE_LIMIT_CUSTOMER_BURST=1000000 \
  MALL_RATE_LIMIT_LOGIN_PER_MIN=1000000 MALL_RATE_LIMIT_LOGIN_BURST=1000000
export MALL_ADMIN_EMAIL=bench-admin@12st.mall MALL_ADMIN_PASSWORD="bench admin password"
export MALL_GATEWAY_URL="http://127.0.0.1:$base"
MALL_NEW_USER_PASSWORD="$MALL_ADMIN_PASSWORD" "$mall" admin create-user --init --admin \
  --email "$MALL_ADMIN_EMAIL" --name Admin --data-dir "$work/data" >/dev/null
"$mall" up --split --data-dir "$work/data" --base-port "$base" >"$work/stdout.log" 2>"$work/stderr.log" &
shop=$!
for _ in $(seq 1 150); do
  curl -sf "$MALL_GATEWAY_URL/api/products" >/dev/null && [ -f "$work/data/demo-customer.json" ] && break
  sleep 0.2
done

api() { # method path [token] [body]
  curl -sf -X "$1" "$MALL_GATEWAY_URL$2" ${3:+-H "authorization: Bearer $3"} \
    -H 'content-type: application/json' ${4:+--data "$4"}
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
login() { api POST /api/auth/login "" "{\"email\":\"$1\",\"password\":\"$2\"}" | field '["access_token"]'; }

demo_email=$(field '["email"]' <"$work/data/demo-customer.json")
demo_password=$(field '["password"]' <"$work/data/demo-customer.json")
token=$(login "$demo_email" "$demo_password")
customer=$(api GET /api/auth/session "$token" | field '["customer_id"]')
export MALL_ADMIN_TOKEN
MALL_ADMIN_TOKEN=$(login "$MALL_ADMIN_EMAIL" "$MALL_ADMIN_PASSWORD")
product=$(api GET /api/products | field '["items"][0]["id"]')
order=$(api POST /api/orders "$token" \
  "{\"product_id\":\"$product\",\"quantity\":1,\"address\":\"1 Teheran-ro, Gangnam-gu, Seoul\"}" |
  field '["order_id"]')

# A new version of order: its own process and instance id, sharing order's database and
# consumer group as a canary's pods would.
# Sets $url to the new instance's base URL.
new_order() { # instance id, faults
  local port=$((base + 20 + $1))
  MALL_INSTANCE_ID="$1" MALL_FAULTS="$2" MALL_ENV=development \
    MALL_PRODUCT_URL="http://127.0.0.1:$((base + 3))" \
    MALL_JWKS_URL="http://127.0.0.1:$((base + 6))/auth/jwks" \
    "$mall" serve order --port "$port" --data-dir "$work/data" >/dev/null 2>>"$work/stderr.log" &
  instances+=($!)
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    curl -sf "$url/health/ready" >/dev/null && return
    sleep 0.1
  done
  echo "order instance $1 did not start" >&2
  exit 1
}

wrk_run() {
  wrk -t2 -c"$connections" -d"${duration}s" --latency \
    -H "authorization: Bearer $token" "$MALL_GATEWAY_URL/api/orders/$order" >"$work/wrk.txt"
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
  errors=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt")
  printf '%-52s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${errors:-0}"
}

new_order 1 ""
healthy=$url
echo "GET /api/orders/{id} through the gateway, wrk ${connections} connections, ${duration} s each:"
wrk_run "no canary"
"$mall" canary start order --instance "$healthy" --steps 0,100 --interval-secs 86400 \
  --min-requests 1000000 >/dev/null
wrk_run "canary of order running, customer not in its cohort"
"$mall" canary abort order >/dev/null && "$mall" canary end order >/dev/null
"$mall" canary start order --instance "$healthy" --customer "$customer" --steps 0,100 \
  --interval-secs 86400 --min-requests 1000000 >/dev/null
wrk_run "canary of order running, customer in its cohort"
"$mall" canary abort order >/dev/null && "$mall" canary end order >/dev/null

new_order 2 "order:error-rate=1"
failing=$url
"$mall" loadgen --url "$MALL_GATEWAY_URL" --admin-email "$MALL_ADMIN_EMAIL" --concurrency 16 \
  --duration-secs 15 --customers 64 --out "$work/loadgen" >"$work/loadgen.log" 2>&1 &
loadgen=$!
sleep 3
"$mall" canary start order --instance "$failing" --steps 50,100 --interval-secs 60 >/dev/null
until "$mall" canary status order --json | field '["phase"]' | grep -q rolled_back; do
  sleep 0.05
done
wait "$loadgen" || true
"$mall" canary status order --json | python3 -c "
import json, sys
s = json.load(sys.stdin)
print(f\"a canary failing every request under mall loadgen (16 workers, 64 customers), steps 50,100:\")
print(f\"  rolled back {s['rolled_back_after_first_error_ms']:.1f} ms after its first failed answer\")
print(f\"  it answered {s['totals']['canary']['requests']} requests ({s['totals']['canary']['errors']} failed); \"
      f\"the stable version {s['totals']['stable']['requests']}\")
print(f\"  reason: {s['reason']}\")
"
grep -E "confirmed|errors" "$work/loadgen.log" | tail -3 || true
