"""deploy/canary.sh played through with stand-ins for kubectl, curl and mall (run by
.ci/pipeline-checks): no cluster and no gateway here, so what is checked is the script's
own logic, with the very command line the release build runs (the step of
deploy/cloudbuild/release.yaml that calls it):

- promoted on every gateway pod: the canary's objects applied with the image, the canary
  started on each pod, then the stable objects applied and rolled, the canary ended on each
  pod and its objects deleted; exit 0;
- rolled back on one pod: the canary aborted and ended on each pod, its objects deleted,
  the stable objects never applied; exit 1;
- a canary already under way: nothing applied, nothing aborted; exit 1;
- a gateway pod that restarts (and forgets the canary) is left out;
- a stable roll that does not finish is undone, then as a rollback; exit 1;
- no verdict by the deadline: as a rollback; exit 1.

  python pipeline-checks-canary.py KUBECTL

KUBECTL is a real kubectl: the stand-in hands `kubectl kustomize` to it, so what the script
would apply is rendered from deploy/k8s as it is.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

import yaml

KUBECTL = os.path.abspath(sys.argv[1])
DIGEST = "europe-west1-docker.pkg.dev/mall-project/mall/mall@sha256:" + "1" * 64
EMAIL, PASSWORD = "release@mall.example", 'pa"ss\\word'
FIRST_PORT = 18080

# The stand-ins: each logs its call as a JSON line to $STUB_LOG and answers from
# $STUB_SCENARIO (pods, their status answers in turn, what fails).
COMMON = """
import json, os, sys, time
scenario = json.load(open(os.environ["STUB_SCENARIO"]))
def log(**entry):
    with open(os.environ["STUB_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\\n")
"""
KUBECTL_STUB = COMMON + r"""
import yaml
args = sys.argv[1:]
if args[0] == "kustomize":
    os.execv(os.environ["REAL_KUBECTL"], ["kubectl"] + args)
namespace = None
if args[0] == "-n":
    namespace, args = args[1], args[2:]
GROUPS = {"StatefulSet": "apps", "Deployment": "apps", "PodDisruptionBudget": "policy"}
def selected():
    path, selector = args[args.index("-f") + 1], args[args.index("-l") + 1]
    key, value = selector.split("=")
    for doc in yaml.safe_load_all(open(path)):
        if doc and (doc["metadata"].get("labels") or {}).get(key) == value:
            spec = (doc.get("spec") or {}).get("template", {}).get("spec") or {}
            images = sorted({c["image"] for c in spec.get("containers", [])})
            group = GROUPS.get(doc["kind"])
            yield (doc["kind"].lower() + (f".{group}" if group else "")
                   + "/" + doc["metadata"]["name"], images, doc["metadata"].get("namespace"))
if args[0] == "get" and args[1] == "pods":
    log(kubectl="get pods", namespace=namespace)
    print("\n".join(scenario["pods"]))
elif args[0] == "get" and args[1] == "pod":
    log(kubectl="get pod", pod=args[2])
    sys.exit(1 if args[2] in scenario.get("gone", []) else 0)
elif args[0] == "port-forward":
    log(kubectl="port-forward", pod=args[1], ports=args[2], namespace=namespace)
    print(f"Forwarding from 127.0.0.1:{args[2].split(':')[0]} -> 8080", flush=True)
    time.sleep(600)
elif args[0] in ("apply", "delete"):
    objects = list(selected())
    log(kubectl=args[0], selector=args[args.index("-l") + 1],
        objects=sorted(o[0] for o in objects), images=sorted({i for o in objects for i in o[1]}),
        namespaces=sorted({o[2] for o in objects}))
    if "-o" in args:
        print("\n".join(o[0] for o in objects))
elif args[0] == "rollout":
    log(kubectl="rollout " + args[1], workload=args[2], namespace=namespace)
    sys.exit(1 if args[1] == "status" and args[2] in scenario.get("rollout_fails", []) else 0)
else:
    log(kubectl="unexpected", args=args)
    sys.exit(3)
"""
CURL_STUB = COMMON + r"""
body = json.load(sys.stdin)
log(curl=sys.argv[-1], email=body["email"], password_ok=body["password"] == scenario["password"])
if body["password"] != scenario["password"]:
    print('{"title":"wrong password"}')
else:
    print('{"access_token":"token-1","token_type":"Bearer","expires_in":900}')
"""
MALL_STUB = COMMON + r"""
_, action, service, *rest = sys.argv[1:]
gateway = rest[rest.index("--gateway") + 1]
pod = scenario["pods"][int(gateway.rsplit(":", 1)[1]) - scenario["first_port"]]
flags = [a for i, a in enumerate(rest) if a != "--gateway" and rest[i - 1] != "--gateway"]
log(mall=action, service=service, pod=pod, flags=flags,
    token_ok=os.environ.get("MALL_ADMIN_TOKEN") == "token-1")
if action != "status":
    sys.exit(0)
counter = os.path.join(os.environ["STUB_STATE"], pod)
n = int(open(counter).read()) if os.path.exists(counter) else 0
open(counter, "w").write(str(n + 1))
answers = scenario["status"][pod]
answer = answers[min(n, len(answers) - 1)]
if answer == "404":
    sys.exit(print(f"the gateway answered 404 Not Found: {service} has no canary", file=sys.stderr) or 1)
phase, weight, *reason = answer.split(":")
print(json.dumps({"service": service, "phase": phase, "weight_percent": int(weight), "step": 0,
                  "reason": reason[0] if reason else None,
                  "log": [{"at": "now", "what": 'started: "phase": "x"'}]}, indent=2))
"""


def release_command():
    """The canary command line of the release build, and the step's own settings."""
    config = yaml.safe_load(open("deploy/cloudbuild/release.yaml"))
    for step in config["steps"]:
        script = "\n".join(step.get("args") or []).replace("\\\n", " ")
        for line in script.splitlines():
            if "deploy/canary.sh" in line:
                words = shlex.split(line.replace('"$(cat /workspace/image)"', DIGEST))
                return words[words.index("deploy/canary.sh") + 1:], step
    sys.exit("deploy/cloudbuild/release.yaml: no step runs deploy/canary.sh")


def play(name, scenario, args, expect_status, deadline="600"):
    with tempfile.TemporaryDirectory() as tmp:
        bin_dir, state = os.path.join(tmp, "bin"), os.path.join(tmp, "state")
        os.makedirs(bin_dir)
        os.makedirs(state)
        for tool, source in (("kubectl", KUBECTL_STUB), ("curl", CURL_STUB), ("mall", MALL_STUB)):
            path = os.path.join(bin_dir, tool)
            with open(path, "w") as f:
                f.write(f"#!{sys.executable}\n{source}")
            os.chmod(path, 0o755)
        scenario = dict(scenario, password=PASSWORD, first_port=FIRST_PORT)
        with open(os.path.join(tmp, "scenario.json"), "w") as f:
            json.dump(scenario, f)
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", REAL_KUBECTL=KUBECTL,
                   STUB_LOG=os.path.join(tmp, "log"), STUB_SCENARIO=os.path.join(tmp, "scenario.json"),
                   STUB_STATE=state, MALL="mall", MALL_ADMIN_EMAIL=EMAIL,
                   MALL_ADMIN_PASSWORD=PASSWORD, CANARY_POLL_SECS="0.05",
                   CANARY_DEADLINE_SECS=deadline, CANARY_FIRST_PORT=str(FIRST_PORT))
        run = subprocess.run(["deploy/canary.sh", *args], env=env, capture_output=True,
                             text=True, timeout=120)
        log = os.path.join(tmp, "log")
        calls = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
    if run.returncode != expect_status:
        sys.exit(f"deploy/canary.sh, {name}: exit {run.returncode}, not {expect_status}\n"
                 f"{run.stdout}{run.stderr}")
    return calls, run.stdout


def check(name, calls, expected, absent=()):
    """The calls matching `expected` (subsets of a call's fields) come in that order; none
    matches any of `absent`."""
    def fits(call, pattern):
        return all(call.get(k) == v for k, v in pattern.items())
    at = 0
    for pattern in expected:
        while at < len(calls) and not fits(calls[at], pattern):
            at += 1
        if at == len(calls):
            sys.exit(f"deploy/canary.sh, {name}: no call {pattern} where expected; calls:\n  "
                     + "\n  ".join(json.dumps(c) for c in calls))
        at += 1
    for pattern in absent:
        if any(fits(call, pattern) for call in calls):
            sys.exit(f"deploy/canary.sh, {name}: an unexpected call {pattern}")
    for call in calls:
        if call.get("kubectl") == "unexpected" or call.get("token_ok") is False or \
                call.get("password_ok") is False:
            sys.exit(f"deploy/canary.sh, {name}: {call}")


args, step = release_command()
service, env = args[0], args[1]
canary, namespace = f"{service}-canary", f"mall-{env}"
start_flags = ["--instance", f"http://{canary}:8080", *args[3:]]
if args[2] != DIGEST:
    sys.exit(f"deploy/cloudbuild/release.yaml: deploy/canary.sh is not given the pushed image: {args}")
with open(f"deploy/k8s/canary/{env}/kustomization.yaml"):
    pass
workload = f"statefulset.apps/{canary}"
stable = f"statefulset.apps/{service}"
pods = ["gateway-7d9f-a", "gateway-7d9f-b"]
rendered = subprocess.run([KUBECTL, "kustomize", f"deploy/k8s/canary/{env}"], check=True,
                          capture_output=True, text=True).stdout
configmap = re.search(r"^  name: (mall-config-\w+)$", rendered, re.M)[1]
canary_objects = sorted([f"serviceaccount/{canary}", f"configmap/{configmap}",
                         f"service/{canary}", workload, f"poddisruptionbudget.policy/{canary}"])
own = sorted(o.replace(canary, service) for o in canary_objects if "configmap" not in o)
applied = {"kubectl": "apply", "selector": f"mall.12st/canary={service}",
           "objects": canary_objects, "images": [DIGEST], "namespaces": [namespace]}
rolled = {"kubectl": "apply", "selector": f"app.kubernetes.io/name={service}",
          "objects": own, "images": [DIGEST], "namespaces": [namespace]}
deleted = {"kubectl": "delete", "selector": f"app.kubernetes.io/name={canary}",
           "objects": sorted(o for o in canary_objects if "configmap" not in o)}
started = [{"mall": "start", "pod": pod, "flags": start_flags} for pod in pods]
ended = [{"mall": "end", "pod": pod} for pod in pods]
aborted = [{"mall": "abort", "pod": pod} for pod in pods]

calls, out = play("promoted", {"pods": pods, "status": {
    pods[0]: ["404", "progressing:5", "progressing:25", "promoted:100"],
    pods[1]: ["404", "progressing:5", "progressing:25", "progressing:50", "promoted:100"]}},
    args, 0)
check("promoted", calls,
      [{"kubectl": "port-forward", "pod": f"pod/{pods[0]}", "ports": f"{FIRST_PORT}:8080"},
       {"curl": f"http://127.0.0.1:{FIRST_PORT}/api/auth/login", "email": EMAIL},
       applied, {"kubectl": "rollout status", "workload": workload}, *started,
       {"mall": "status", "pod": pods[1]}, rolled,
       {"kubectl": "rollout status", "workload": stable}, *ended, deleted],
      absent=[{"mall": "abort"}, {"kubectl": "rollout undo"}])

calls, out = play("rolled back", {"pods": pods, "status": {
    pods[0]: ["404", "progressing:5", "progressing:25"],
    pods[1]: ["404", "progressing:5", "rolled_back:0:3.0 % of the canary's answers failed"]}},
    args, 1)
check("rolled back", calls, [applied, *started, *aborted[:1], *ended[:1], deleted],
      absent=[{"kubectl": "apply", "selector": f"app.kubernetes.io/name={service}"},
              {"kubectl": "rollout undo"}])
check("rolled back", calls, [*aborted[1:], *ended[1:]])
if "3.0 % of the canary's answers failed" not in out:
    sys.exit(f"deploy/canary.sh, rolled back: the reason is not shown:\n{out}")

calls, out = play("a canary under way", {"pods": pods, "status": {
    pods[0]: ["404"], pods[1]: ["progressing:25"]}}, args, 1)
check("a canary under way", calls, [{"mall": "status", "pod": pods[1]}],
      absent=[{"kubectl": "apply"}, {"kubectl": "delete"}, {"mall": "start"},
              {"mall": "abort"}, {"mall": "end"}])

calls, out = play("a gateway pod restarts", {"pods": pods, "status": {
    pods[0]: ["404", "progressing:5", "404"],
    pods[1]: ["404", "progressing:5", "progressing:25", "promoted:100"]}}, args, 0)
# The pods that hold the canary first, then the one left out (its end is a 404, ignored).
check("a gateway pod restarts", calls, [applied, *started, rolled, ended[1], ended[0], deleted],
      absent=[{"mall": "abort"}])
if f"{pods[0]} went away or restarted" not in out:
    sys.exit(f"deploy/canary.sh, a gateway pod restarts: not said:\n{out}")

calls, out = play("the stable roll fails", {"pods": pods, "rollout_fails": [stable], "status": {
    pods[0]: ["404", "promoted:100"], pods[1]: ["404", "promoted:100"]}}, args, 1)
check("the stable roll fails", calls,
      [applied, *started, rolled, {"kubectl": "rollout status", "workload": stable},
       {"kubectl": "rollout undo", "workload": stable}, aborted[0], ended[0], deleted])

calls, out = play("no verdict by the deadline", {"pods": pods, "status": {
    pods[0]: ["404", "progressing:5"], pods[1]: ["404", "progressing:5"]}}, args, 1,
    deadline="1")
check("no verdict by the deadline", calls, [applied, *started, *aborted, deleted],
      absent=[{"kubectl": "apply", "selector": f"app.kubernetes.io/name={service}"}])

print(f"deploy/canary.sh {' '.join(args[:2])} IMAGE {' '.join(args[3:])} (the release build's): "
      "promoted, rolled back, under way, a pod restarting, a failed stable roll and no verdict "
      "played through with stand-ins for kubectl, curl and mall")
