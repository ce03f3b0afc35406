#!/usr/bin/env bash
# What tracing costs, in one run: `mall loadgen` against a `mall up --split` three times,
# with tracing off (no endpoint), sampling 10 % of new traces, and 100 %, exported over
# OTLP/gRPC to a receiver on this machine (crates/mall/tests/shop/otlp_receiver.py, which
# writes every span it gets). Prints confirmed orders/s, the saga's p99 (loadgen) and the
# gateway's p99 (from its own request-duration histogram, interpolated in its buckets as
# Prometheus's histogram_quantile does), spans received and spans the shop dropped.
# Needs the receiver's venv (.ci/run makes it: $HOME/.cache/12st-mall/otlp-venv).
# Builds the release binary unless MALL_BIN names one.
#   bench/tracing.sh [seconds of load, default 20] [concurrency, default 16]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_OF_LOAD=${1:-20}
CONCURRENCY=${2:-16}
PYTHON=${MALL_TEST_OTLP_PYTHON:-$HOME/.cache/12st-mall/otlp-venv/bin/python}
"$PYTHON" -c 'import grpc, opentelemetry.proto.collector.trace.v1' ||
  { echo "needs $PYTHON with opentelemetry-proto and grpcio (see .ci/run)" >&2; exit 1; }
if [ -z "${MALL_BIN:-}" ]; then
  cargo build --release -q
  MALL_BIN="${CARGO_TARGET_DIR:-target}/release/mall"
fi
export MALL_RATE_LIMIT_IP_PER_SEC=100000 MALL_RATE_LIMIT_IP_BURST=100000 MALL_LOG=warn
export MALL_RATE_LIMIT_LOGIN_PER_MIN=100000 MALL_RATE_LIMIT_LOGIN_BURST=100000
export MALL_RATE_LIMIT_CUSTOMER_PER_SEC=100000 MALL_RATE_LIMIT_CUSTOMER_BURST=100000

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The gateway's request durations, as "<upper bound> <cumulative count>" per bucket.
gateway_buckets() {
  curl -sf "http://127.0.0.1:$1/metrics" | awk '
    /^mall_http_request_duration_seconds_bucket/ {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      count[le] += $NF
    }
    END { for (le in count) print le, count[le] }'
}

# The p99 (ms) of the requests between two bucket snapshots.
p99_between() {
  python3 - "$1" "$2" <<'PY'
import sys
def read(path):
    return {float(le): float(n) for le, n in (line.split() for line in open(path))}
before, after = read(sys.argv[1]), read(sys.argv[2])
bounds = sorted(after)
counts = [after[b] - before.get(b, 0.0) for b in bounds]
total = counts[-1]
if total == 0:
    print("n/a"); sys.exit()
rank, lower, below = 0.99 * total, 0.0, 0.0
for bound, cumulative in zip(bounds, counts):
    if cumulative >= rank:
        if bound == float("inf"):
            print(f">{lower * 1e3:.0f}"); break
        share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
        print(f"{(lower + (bound - lower) * share) * 1e3:.1f}"); break
    lower, below = bound, cumulative
PY
}

rows=()
run() { # name, then the tracing settings
  local name=$1; shift
  local dir="$work/$RANDOM"; mkdir -m 700 "$dir"
  local port=$((24000 + RANDOM % 4000))
  local receiver_port=$((port + 60))
  "$PYTHON" crates/mall/tests/shop/otlp_receiver.py "$receiver_port" "$dir/spans.jsonl" \
    >"$dir/receiver.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q ready "$dir/receiver.log" && break; sleep 0.1; done
  local settings=()
  for setting in "$@"; do settings+=("${setting//RECEIVER/$receiver_port}"); done
  set -- "${settings[@]}"
  env "$@" MALL_NEW_USER_PASSWORD=loadadmin1 "$MALL_BIN" admin create-user --init --admin \
    --email load@12st.mall --name Load --data-dir "$dir" >/dev/null
  env "$@" "$MALL_BIN" up --split --base-port "$port" --data-dir "$dir" >"$dir/up.log" 2>&1 &
  local shop=$!
  pids+=("$shop")
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
  sleep 2
  gateway_buckets "$port" >"$dir/before"
  echo "== $name"
  MALL_ADMIN_PASSWORD=loadadmin1 "$MALL_BIN" loadgen --url "http://127.0.0.1:$port" \
    --admin-email load@12st.mall --concurrency "$CONCURRENCY" \
    --duration-secs "$SECONDS_OF_LOAD" --out "$dir/loadgen" | tee "$dir/loadgen.txt" |
    grep -E "confirmed orders|saga latency|errors" || true
  gateway_buckets "$port" >"$dir/after"
  sleep 2 # the last batch of spans leaves within a second
  local dropped=0
  for offset in 0 1 2 3 4 5 6; do
    local d
    d=$(curl -sf "http://127.0.0.1:$((port + offset))/metrics" |
      awk '/^mall_trace_spans_dropped_total/ {n += $NF} END {print n + 0}')
    dropped=$((dropped + ${d%.*}))
  done
  local confirmed saga_p99 gateway_p99 received
  read -r confirmed saga_p99 < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("%.1f %.1f" % (r["confirmed_orders_per_sec"], r["saga_latency_placed_to_confirmed"]["p99_ms"]))
' "$dir/loadgen/result.json")
  gateway_p99=$(p99_between "$dir/before" "$dir/after")
  received=$(wc -l <"$dir/spans.jsonl")
  rows+=("$(printf '| %s | %s | %s ms | %s ms | %s | %s |' "$name" "$confirmed" "$saga_p99" \
    "$gateway_p99" "$received" "$dropped")")
  kill "$shop"; wait "$shop" 2>/dev/null || true
}

run "tracing off"
run "10 % sampled" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:RECEIVER" \
  OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1
run "100 % sampled" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:RECEIVER" \
  OTEL_TRACES_SAMPLER=parentbased_always_on

echo
echo "| tracing | confirmed orders/s | saga p99 | gateway p99 | spans received | spans dropped |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
