"""A canary's manifests against its overlay (run by .ci/deploy-checks):

  python deploy-checks-canary.py WHERE OVERLAY.yaml CANARY.yaml

OVERLAY.yaml is `kubectl kustomize deploy/k8s/overlays/<env>`, CANARY.yaml is
`kubectl kustomize deploy/k8s/canary/<env>` (the overlay and the canaries). Checks, for
each service with a canary (objects labelled mall.12st/canary=<service>):

- everything but the canary's objects is the overlay's, unchanged (the ConfigMap it
  labels only gains that label), so applying the canary changes nothing else;
- the canary's workload is the service's but for the names (<service>-canary) and the
  replicas: the same image, settings, secrets, probes, security context and resources;
- every ConfigMap the canary reads is applied with it;
- the Service <service> selects the stable pods only, <service>-canary the canary's only;
- each NetworkPolicy selects the canary's pods if and only if it selects the service's,
  and lets the canary's pods through (as a peer) if and only if it lets the service's.
"""
import json
import sys

import yaml

where, overlay_path, canary_path = sys.argv[1:]


def key(doc):
    return doc["kind"], doc["metadata"]["name"]


def load(path):
    return {key(doc): doc for doc in yaml.safe_load_all(open(path)) if doc}


def labels(doc):
    return doc["metadata"].get("labels") or {}


def matches(selector, pod_labels):
    for name, value in (selector.get("matchLabels") or {}).items():
        if pod_labels.get(name) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        name, values = expression["key"], expression.get("values") or []
        has = name in pod_labels
        if not {"In": has and pod_labels[name] in values,
                "NotIn": not has or pod_labels[name] not in values,
                "Exists": has,
                "DoesNotExist": not has}[expression["operator"]]:
            return False
    return True


def peers(policy):
    for direction in ("ingress", "egress"):
        for rule in policy["spec"].get(direction) or []:
            for peer in (rule.get("from") or []) + (rule.get("to") or []):
                if "podSelector" in peer:
                    yield peer["podSelector"]


def workload(objects, name):
    return next((doc for (kind, n), doc in objects.items()
                 if n == name and "template" in (doc.get("spec") or {})), None)


overlay, rendered = load(overlay_path), load(canary_path)
applied = {k: doc for k, doc in rendered.items() if "mall.12st/canary" in labels(doc)}
services = sorted({labels(doc)["mall.12st/canary"] for doc in applied.values()})
bad = []
if not services:
    bad.append("no object labelled mall.12st/canary")

for k, doc in rendered.items():
    if k in applied and k[0] != "ConfigMap":
        continue
    plain = json.loads(json.dumps(doc))
    plain["metadata"].get("labels", {}).pop("mall.12st/canary", None)
    if overlay.get(k) != plain:
        bad.append(f"{k[0]}/{k[1]} is not the overlay's")
for kind, name in sorted(overlay.keys() - rendered.keys()):
    bad.append(f"{kind}/{name} of the overlay is missing")

policies = [doc for (kind, _), doc in rendered.items() if kind == "NetworkPolicy"]
for service in services:
    canary = f"{service}-canary"
    new, stable = workload(rendered, canary), workload(rendered, service)
    if not new or not stable or new["kind"] != stable["kind"]:
        bad.append(f"{canary}: no workload of the kind of {service}'s")
        continue
    if ("mall.12st/canary", service) not in labels(new).items():
        bad.append(f"{new['kind']}/{canary} is not labelled mall.12st/canary={service}")
    twin = json.loads(json.dumps(new["spec"]).replace(f'"{canary}"', f'"{service}"'))
    twin["replicas"] = stable["spec"].get("replicas")
    if twin != stable["spec"]:
        bad.append(f"{new['kind']}/{canary} is not {service}'s but for the names")
    pod_spec = new["spec"]["template"]["spec"]
    read = {source["configMapRef"]["name"]
            for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", [])
            for source in container.get("envFrom") or [] if "configMapRef" in source}
    read |= {volume["configMap"]["name"] for volume in pod_spec.get("volumes") or []
             if "configMap" in volume and ("ConfigMap", volume["configMap"]["name"]) in rendered}
    for name in sorted(read):
        if ("ConfigMap", name) not in applied and ("ConfigMap", name) in rendered:
            bad.append(f"{canary} reads ConfigMap {name}, which is not applied with it")
    pods = {"stable": stable["spec"]["template"]["metadata"]["labels"],
            "canary": new["spec"]["template"]["metadata"]["labels"]}
    for name, own in ((service, "stable"), (canary, "canary")):
        svc = rendered.get(("Service", name))
        if not svc:
            bad.append(f"no Service {name}")
            continue
        for version, pod_labels in pods.items():
            if matches({"matchLabels": svc["spec"].get("selector") or {}}, pod_labels) != (version == own):
                bad.append(f"Service {name} {'misses' if version == own else 'selects'} "
                           f"the {version} pods")
    for policy in policies:
        name = policy["metadata"]["name"]
        selector = policy["spec"]["podSelector"]
        if matches(selector, pods["stable"]) != matches(selector, pods["canary"]):
            bad.append(f"NetworkPolicy {name} applies to the pods of {service} or of {canary}, "
                       "not both")
        for peer in peers(policy):
            if matches(peer, pods["stable"]) != matches(peer, pods["canary"]):
                bad.append(f"NetworkPolicy {name} lets the pods of {service} or of {canary} "
                           "through, not both")

if bad:
    sys.exit(f"{where}:\n  " + "\n  ".join(bad))
print(f"{where}: {', '.join(s + '-canary' for s in services)} its service's twin but for the "
      f"names, allowed as its service is; the rest of the overlay unchanged")
