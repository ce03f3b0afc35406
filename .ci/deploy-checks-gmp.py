"""The Managed Service for Prometheus objects of a rendered overlay (deploy/k8s/monitoring),
which Kubernetes' own schemas do not know (they are CRDs of GKE's managed collection).

Usage: deploy-checks-gmp.py RENDERED.yaml GMP-OUT.yaml REST-OUT.yaml

Splits RENDERED into its monitoring.googleapis.com objects (GMP-OUT) and the rest
(REST-OUT, for kubernetes-validate), then checks the former:
- against the schema below: written here from the CRDs' v1 fields this project uses
  (monitoring.googleapis.com/v1 PodMonitoring and Rules), strict as kubernetes-validate
  --strict is (an unknown or misspelt field fails), not the CRDs themselves, which are
  not on this machine: a field the CRD has and this schema lacks fails here first;
- each service of the shop has one PodMonitoring, named after it (the scrape job is the
  PodMonitoring's name, and ServiceDown reads `up{job=<service>}`), selecting the pods
  of that service's workload and a port those pods declare;
- the Rules carry the groups of deploy/monitoring/rules/*.yml unchanged.
"""
import pathlib
import re
import sys

import jsonschema
import yaml

DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"}
NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": NAME,
        "namespace": NAME,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
SELECTOR = {
    "type": "object",
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
    "minProperties": 1,
}
POD_MONITORING = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.googleapis.com/v1"},
        "kind": {"const": "PodMonitoring"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": SELECTOR,
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        # The CRD requires both.
                        "required": ["port", "interval"],
                        "properties": {
                            "port": {"anyOf": [{"type": "string", "minLength": 1},
                                               {"type": "integer", "minimum": 1}]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": DURATION,
                            "timeout": DURATION,
                        },
                        "additionalProperties": False,
                    },
                },
                "filterRunning": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
RULE = {
    "type": "object",
    "required": ["expr"],
    "properties": {
        "record": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        "alert": {"type": "string"},
        "expr": {"type": "string", "minLength": 1},
        "for": DURATION,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
    # The CRD's rules: exactly one of record and alert; annotations and `for` only on alerts.
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "dependentSchemas": {
        "record": {"not": {"anyOf": [{"required": ["annotations"]}, {"required": ["for"]}]}},
    },
}
RULES = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.googleapis.com/v1"},
        "kind": {"const": "Rules"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "rules": {"type": "array", "minItems": 1, "items": RULE},
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
SCHEMAS = {"PodMonitoring": POD_MONITORING, "Rules": RULES}
SERVICES = ["gateway", "auth", "order", "product", "payment", "delivery", "mypage"]


def selects(selector, labels):
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def main(rendered, gmp_out, rest_out):
    documents = [d for d in yaml.safe_load_all(open(rendered)) if d]
    gmp = [d for d in documents if d["apiVersion"].startswith("monitoring.googleapis.com/")]
    rest = [d for d in documents if d not in gmp]
    yaml.safe_dump_all(gmp, open(gmp_out, "w"), sort_keys=False)
    yaml.safe_dump_all(rest, open(rest_out, "w"), sort_keys=False)
    bad = []
    for doc in gmp:
        where = f"{rendered}: {doc['kind']}/{doc['metadata'].get('name')}"
        schema = SCHEMAS.get(doc["kind"])
        if schema is None:
            bad.append(f"{where}: a kind this check has no schema for")
            continue
        validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
        bad += [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(doc)]

    workloads = [d for d in rest if d["kind"] in ("Deployment", "StatefulSet")]
    monitorings = {d["metadata"]["name"]: d for d in gmp if d["kind"] == "PodMonitoring"}
    if sorted(monitorings) != sorted(SERVICES):
        bad.append(f"{rendered}: PodMonitorings {sorted(monitorings)}, not one per service {sorted(SERVICES)}")
    for name, monitoring in monitorings.items():
        selected = [w for w in workloads
                    if selects(monitoring["spec"]["selector"], w["spec"]["template"]["metadata"].get("labels", {}))]
        if [w["metadata"]["name"] for w in selected] != [name]:
            bad.append(f"{rendered}: PodMonitoring/{name} selects the pods of "
                       f"{[w['metadata']['name'] for w in selected]}, not of {name}")
        for workload in selected:
            ports = {p.get("name") for c in workload["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])}
            for endpoint in monitoring["spec"]["endpoints"]:
                if endpoint["port"] not in ports:
                    bad.append(f"{rendered}: PodMonitoring/{name} scrapes port {endpoint['port']!r}, "
                               f"which {workload['metadata']['name']}'s pods do not declare ({sorted(ports)})")

    expected = {}
    for path in sorted(pathlib.Path("deploy/monitoring/rules").glob("*.yml")):
        expected[f"mall-{path.stem}"] = yaml.safe_load(path.read_text())["groups"]
    carried = {d["metadata"]["name"]: d["spec"]["groups"] for d in gmp if d["kind"] == "Rules"}
    if carried != expected:
        bad.append(f"{rendered}: the Rules are not deploy/monitoring/rules/*.yml "
                   f"(python3 deploy/monitoring/gmp-rules.py > deploy/k8s/monitoring/rules.yaml)")
    if bad:
        sys.exit("Managed Prometheus objects:\n" + "\n".join(bad))
    print(f"deploy/k8s/overlays/{pathlib.Path(rendered).stem}: {len(monitorings)} PodMonitorings and {len(carried)} Rules "
          f"({sum(len(g['rules']) for groups in carried.values() for g in groups)} rules) valid "
          f"(.ci/deploy-checks-gmp.py's schema), each service scraped, the rules as in deploy/monitoring")


main(*sys.argv[1:])
