#!/usr/bin/env bash
# The gateway's cost, measured with wrk on one machine in one run (figures in the README):
#   1. GET /products/{id} straight to the product service;
#   2. GET /api/products/{id} through the gateway, with a bearer token it verifies;
#   3. GET /products/{id} through nginx as a plain reverse proxy (no token check).
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light). Builds the release binary.
# Usage: bench/gateway.sh [seconds per run, default 10] [connections, default 32]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-32}"
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk nginx-light)" >&2; exit 1; }
done
cargo build --release -q
mall="${CARGO_TARGET_DIR:-target}/release/mall"

work=$(mktemp -d)
base=$((20000 + RANDOM % 30000))
nginx_port=$((base + 10))
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  kill "${shop:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

MALL_RATE_LIMIT_IP_PER_SEC=1000000 MALL_RATE_LIMIT_IP_BURST=1000000 \
MALL_RATE_LIMIT_CUSTOMER_PER_SEC=1000000 MALL_RATE_LIMIT_CUSTOMER_BURST=1000000 MALL_LOG=warn \
  "$mall" up --data-dir "$work/data" --base-port "$base" >"$work/stdout.log" 2>"$work/stderr.log" &
shop=$!
for _ in $(seq 1 100); do
  [ -f "$work/data/demo-customer.json" ] && curl -sf "http://127.0.0.1:$base/api/products" >/dev/null && break
  sleep 0.2
done
product=$(curl -sf "http://127.0.0.1:$base/api/products" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
token=$(python3 - "$work/data/demo-customer.json" "$base" <<'PY'
import json, sys, urllib.request
demo = json.load(open(sys.argv[1]))
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[2]}/api/auth/login",
    data=json.dumps({"email": demo["email"], "password": demo["password"]}).encode(),
    headers={"content-type": "application/json"})
print(json.load(urllib.request.urlopen(request))["access_token"])
PY
)

cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx-body;
  proxy_temp_path $work/nginx-proxy;
  upstream product { server 127.0.0.1:$((base + 3)); keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://product;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"
sleep 0.5

run() {
  local name="$1"; shift
  wrk -t2 -c"$connections" -d"${duration}s" --latency "$@" >"$work/wrk.txt"
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
  errors=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt")
  printf '%-44s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "${errors:-0}"
}
echo "wrk: 2 threads, $connections connections, ${duration}s per run; product $product"
run "product service, direct" "http://127.0.0.1:$((base + 3))/products/$product"
run "gateway, verifying the bearer token" -H "Authorization: Bearer $token" "http://127.0.0.1:$base/api/products/$product"
run "gateway, no token" "http://127.0.0.1:$base/api/products/$product"
run "nginx, plain reverse proxy" "http://127.0.0.1:$nginx_port/products/$product"
