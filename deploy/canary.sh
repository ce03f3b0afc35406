#!/usr/bin/env bash
# A canary of one service at the gateway, in one environment on Kubernetes (README,
# "Canary releases in Kubernetes"). The release build runs it for order in prod
# (deploy/cloudbuild/release.yaml, step order-canary); an operator can run it by hand.
#
#   deploy/canary.sh SERVICE ENV IMAGE [FLAGS of `mall canary start`...]
#   deploy/canary.sh order prod europe-west1-docker.pkg.dev/P/mall/mall@sha256:... \
#     --role admin --steps 5,25,50,100 --interval-secs 300
#
# 1. Checks that no gateway pod has a canary of SERVICE under way (then it stops and
#    touches nothing), applies the canary's objects with IMAGE (deploy/k8s/canary/ENV,
#    the objects labelled mall.12st/canary=SERVICE: SERVICE-canary's workload and Service,
#    and the ConfigMap of this version) and waits for its pods.
# 2. Starts the canary on every gateway pod (`mall canary start SERVICE --instance
#    http://SERVICE-canary:8080 FLAGS`), each through a `kubectl port-forward` of its own:
#    a canary lives in the memory of the gateway process that was told to start it, so
#    every pod is told. Each pod judges its own share of the requests.
# 3. Follows them (`mall canary status`) until every pod has promoted the canary, or one
#    has rolled it back, or CANARY_DEADLINE_SECS (4800) have passed. A pod that goes away
#    or restarts holds no canary any more (it sends every request to the stable version)
#    and is left out; one that starts later never had one.
# 4. Promoted: applies SERVICE's own objects with IMAGE (its stable workload rolls to the
#    new version while the canary takes every request) and waits for the roll, ends the
#    canary on every pod (`mall canary end`: every request to the stable pods, which run
#    the new version now) and deletes the canary's objects. Exit 0.
#    Anything else: aborts and ends the canary on every pod (every request to the stable
#    version) and deletes the canary's objects; the stable workload is not touched (a roll
#    that did not finish is undone first). Exit 1.
#
# Needs kubectl with the cluster's credentials, curl, and the `mall` binary of the release
# (MALL, default `mall` on PATH). The admin account: MALL_ADMIN_EMAIL and
# MALL_ADMIN_PASSWORD. The script logs in through the gateway itself and again every ten
# minutes, because a token lives 15 minutes at most (MALL_TOKEN_MAX_LIFETIME_SECS) and a
# canary longer; `mall canary start --wait` would follow one gateway with one token.
set -euo pipefail

if [ $# -lt 3 ]; then
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 2
fi
service="$1" env="$2" image="$3"
shift 3
flags=("$@")
for flag in ${flags[@]+"${flags[@]}"}; do
  if [ "$flag" = --wait ] || [ "${flag%%=*}" = --instance ] || [ "${flag%%=*}" = --gateway ]; then
    echo "$flag: the script sets it (--instance, --gateway) or does it (--wait) itself" >&2
    exit 2
  fi
done
root="$(cd "$(dirname "$0")/.." && pwd)"
canary="$service-canary"
namespace="mall-$env"
mall="${MALL:-mall}"
poll="${CANARY_POLL_SECS:-15}"
deadline=$((SECONDS + ${CANARY_DEADLINE_SECS:-4800}))
first_port="${CANARY_FIRST_PORT:-18080}"
: "${MALL_ADMIN_EMAIL:?an admin account of the shop}" "${MALL_ADMIN_PASSWORD:?its password}"

log() { printf '%s canary of %s: %s\n' "$(date -u +%H:%M:%S)" "$service" "$*"; }
if [ ! -f "$root/deploy/k8s/canary/$env/kustomization.yaml" ]; then
  log "no deploy/k8s/canary/$env"
  exit 2
fi
case "$image" in
  *@sha256:*) pin="digest: ${image#*@}" name="${image%@*}" ;;
  *:*) pin="newTag: ${image##*:}" name="${image%:*}" ;;
  *) log "IMAGE is <registry>/mall@sha256:... or <registry>/mall:<tag>, not $image"; exit 2 ;;
esac

work="$(mktemp -d)"
pods=()          # gateway pods that hold the canary
left_out=()      # gateway pods that went away or forgot it
declare -A port forwarder seen failures
owned=false      # the canary objects and the gateways' canaries are this run's
stable_rolling=false stable=""
finished=false

forward() { # forward POD: a local port to the pod's API port, as long as the script runs
  local pod="$1"
  kubectl -n "$namespace" port-forward "pod/$pod" "${port[$pod]}:8080" \
    > "$work/forward-$pod.log" 2>&1 &
  forwarder[$pod]=$!
  for _ in $(seq 150); do
    grep -q '^Forwarding from' "$work/forward-$pod.log" && return 0
    kill -0 "${forwarder[$pod]}" 2>/dev/null || break
    sleep 0.2
  done
  log "no port-forward to $pod: $(tr '\n' ' ' < "$work/forward-$pod.log")"
  return 1
}

token="" token_at=0
login() { # an admin's token, from the gateway; a new one every ten minutes
  if [ -n "$token" ] && [ $((SECONDS - token_at)) -lt 600 ]; then return 0; fi
  local pod answer email="${MALL_ADMIN_EMAIL//\\/\\\\}" password="${MALL_ADMIN_PASSWORD//\\/\\\\}"
  email="${email//\"/\\\"}" password="${password//\"/\\\"}"
  for pod in ${pods[@]+"${pods[@]}"}; do
    # The password on stdin, not on a command line.
    answer="$(printf '{"email":"%s","password":"%s"}' "$email" "$password" |
      curl -sS --max-time 10 -H 'Content-Type: application/json' --data @- \
        "http://127.0.0.1:${port[$pod]}/api/auth/login" 2>&1)" || continue
    token="$(sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p' <<<"$answer")"
    if [ -n "$token" ]; then
      token_at=$SECONDS
      return 0
    fi
    log "login refused: $answer"
  done
  log "cannot log in as $MALL_ADMIN_EMAIL through any gateway pod"
  return 1
}

call() { # call POD ACTION [ARGS...]: `mall canary ACTION SERVICE` on that gateway pod
  local pod="$1" action="$2"
  shift 2
  MALL_ADMIN_TOKEN="$token" "$mall" canary "$action" "$service" \
    --gateway "http://127.0.0.1:${port[$pod]}" "$@"
}

field() { # field NAME: the first "NAME": value of the JSON on stdin
  grep -o "\"$1\": *\(\"[^\"]*\"\|[0-9.]*\)" | head -n 1 | sed 's/^[^:]*: *//; s/"//g'
}

finish() {
  local status=$? pod
  if $owned && ! $finished; then
    log "failed: every request goes back to the stable version"
    if $stable_rolling; then
      log "undoing the roll of $stable"
      kubectl -n "$namespace" rollout undo "$stable" || true
      kubectl -n "$namespace" rollout status "$stable" --timeout=15m || true
    fi
    login || true
    for pod in ${pods[@]+"${pods[@]}"} ${left_out[@]+"${left_out[@]}"}; do
      call "$pod" abort > /dev/null 2>&1 || true
      call "$pod" end || true
    done
    kubectl delete -f "$work/rendered.yaml" -l "app.kubernetes.io/name=$canary" \
      --ignore-not-found --wait=true --timeout=5m || true
    status=1
  fi
  for pod in "${!forwarder[@]}"; do
    kill "${forwarder[$pod]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
  exit "$status"
}
trap finish EXIT
trap 'exit 1' INT TERM

# What is applied: deploy/k8s/canary/ENV with IMAGE in place of every `mall`, as the
# pipeline's own deploys set it (an overlay of the overlay).
cat > "$work/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$work" "$root/deploy/k8s/canary/$env")
images:
  - name: mall
    newName: $name
    $pin
YAML
kubectl kustomize "$work" > "$work/rendered.yaml"
if ! grep -q "mall.12st/canary: $service\$" "$work/rendered.yaml"; then
  log "deploy/k8s/canary/$env has no canary of $service (no object labelled mall.12st/canary=$service)"
  exit 2
fi

# The gateway pods, each with a port-forward of its own.
mapfile -t pods < <(kubectl -n "$namespace" get pods -l app.kubernetes.io/name=gateway \
  --field-selector=status.phase=Running -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
if [ ${#pods[@]} -eq 0 ]; then
  log "no gateway pod runs in $namespace"
  exit 1
fi
next=$first_port
for pod in "${pods[@]}"; do
  port[$pod]=$next
  next=$((next + 1))
  forward "$pod"
done
login

# Nothing is touched while a canary of SERVICE is under way on any pod (another run's,
# or an operator's): its objects and its gateways' state are not this run's.
for pod in "${pods[@]}"; do
  if answer="$(call "$pod" status --json 2>&1)"; then
    phase="$(field phase <<<"$answer")"
    if [ "$phase" != rolled_back ]; then
      log "$pod has a canary of $service that is $phase: end it first (mall canary end)"
      exit 1
    fi
  elif ! grep -q 'answered 404' <<<"$answer"; then
    log "$pod: $answer"
    exit 1
  fi
done

owned=true
log "applying $canary ($image) in $namespace"
canary_objects="$(kubectl apply -f "$work/rendered.yaml" -l "mall.12st/canary=$service" -o name)"
workload="$(grep -E '^(statefulset|deployment)\.apps/' <<<"$canary_objects")"
kubectl -n "$namespace" rollout status "$workload" --timeout=10m

for pod in "${pods[@]}"; do
  log "starting it on $pod"
  call "$pod" start --instance "http://$canary:8080" ${flags[@]+"${flags[@]}"} > /dev/null
done

while :; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "no verdict within ${CANARY_DEADLINE_SECS:-4800} s (too few requests to judge a step?)"
    exit 1
  fi
  sleep "$poll"
  # A failed login keeps the token it has; past its 15 minutes the pods answer 401.
  login || true
  live=() promoted=0
  for pod in "${pods[@]}"; do
    if ! kill -0 "${forwarder[$pod]}" 2>/dev/null; then
      forward "$pod" || true
    fi
    if answer="$(call "$pod" status --json 2>&1)"; then
      failures[$pod]=0
      phase="$(field phase <<<"$answer")" weight="$(field weight_percent <<<"$answer")"
      if [ "${seen[$pod]:-}" != "$phase $weight" ]; then
        log "$pod: ${phase//_/ }, $weight % of everyone else besides the cohort"
        seen[$pod]="$phase $weight"
      fi
      case "$phase" in
        progressing) live+=("$pod") ;;
        promoted) live+=("$pod") promoted=$((promoted + 1)) ;;
        rolled_back)
          log "$pod rolled it back: $(field reason <<<"$answer")"
          exit 1 ;;
        *)
          log "$pod: no phase in its answer: $answer"
          exit 1 ;;
      esac
    elif grep -q 'answered 404' <<<"$answer" ||
         ! kubectl -n "$namespace" get pod "$pod" > /dev/null 2>&1; then
      log "$pod went away or restarted and holds no canary: left out"
      left_out+=("$pod")
    else
      failures[$pod]=$((${failures[$pod]:-0} + 1))
      log "$pod did not answer (${failures[$pod]} in a row): $answer"
      if [ "${failures[$pod]}" -ge 8 ]; then
        exit 1
      fi
      live+=("$pod")
    fi
  done
  pods=(${live[@]+"${live[@]}"})
  if [ ${#pods[@]} -eq 0 ]; then
    log "no gateway pod holds the canary any more"
    exit 1
  fi
  if [ "$promoted" -eq ${#pods[@]} ]; then
    break
  fi
done

stable="${workload%-canary}"
log "promoted on every gateway pod; rolling $stable to $image"
stable_rolling=true
kubectl apply -f "$work/rendered.yaml" -l "app.kubernetes.io/name=$service"
kubectl -n "$namespace" rollout status "$stable" --timeout=15m
# From here a failure leaves the stable version as it is now: the new one.
stable_rolling=false
log "$service runs the new version; ending the canary"
login || true
for pod in "${pods[@]}" ${left_out[@]+"${left_out[@]}"}; do
  call "$pod" end || log "$pod: no canary to end"
done
kubectl delete -f "$work/rendered.yaml" -l "app.kubernetes.io/name=$canary" \
  --ignore-not-found --wait=true --timeout=5m
finished=true
log "done: $service runs $image; $canary is deleted"
