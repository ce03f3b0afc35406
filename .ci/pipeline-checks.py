"""The pipeline's files against what Cloud Build, Cloud Deploy and skaffold accept, as far
as a machine with no account and no network can tell (run by .ci/pipeline-checks, which
also has gcloud itself parse them where gcloud exists).

  python pipeline-checks.py RENDERED_DIR

RENDERED_DIR holds <profile>.yaml for each skaffold profile (`kubectl kustomize` of its
paths) and dev-digest.yaml (the dev overlay as cloudbuild.yaml's deploy-dev step builds it).
Field lists: the documented resources (Cloud Build v1 Build, BuildStep, BuildOptions,
BuildTrigger; Cloud Deploy v1 DeliveryPipeline, Target; skaffold v4beta*), limited to what
an unknown or misspelt key should be caught in.
"""
import os
import re
import sys

import yaml

errors = []


def error(where, message):
    errors.append(f"{where}: {message}")


def load(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def keys(where, mapping, allowed):
    if not isinstance(mapping, dict):
        error(where, f"expected a mapping, got {type(mapping).__name__}")
        return {}
    for key in mapping:
        if key not in allowed:
            error(where, f"unknown field {key!r}")
    return mapping


# --- Cloud Build: the build configs ------------------------------------------------------
BUILD = {"steps", "timeout", "queueTtl", "logsBucket", "options", "substitutions", "tags",
         "serviceAccount", "secrets", "availableSecrets", "artifacts", "images",
         "dependencies"}
STEP = {"name", "args", "env", "allowFailure", "allowExitCodes", "dir", "id", "waitFor",
        "entrypoint", "secretEnv", "volumes", "timeout", "script", "automapSubstitutions"}
OPTIONS = {"env", "secretEnv", "volumes", "sourceProvenanceHash", "machineType",
           "diskSizeGb", "substitutionOption", "dynamicSubstitutions",
           "automapSubstitutions", "logStreamingOption", "logging", "defaultLogsBucketBehavior",
           "pool", "requestedVerifyOption", "workerPool", "pubsubTopic"}
MACHINE_TYPES = {"UNSPECIFIED", "N1_HIGHCPU_8", "N1_HIGHCPU_32", "E2_HIGHCPU_8",
                 "E2_HIGHCPU_32", "E2_MEDIUM"}
LOGGING = {"LOGGING_UNSPECIFIED", "LEGACY", "GCS_ONLY", "STACKDRIVER_ONLY",
           "CLOUD_LOGGING_ONLY", "NONE"}
# The substitutions Cloud Build fills itself; a tag build has no branch, and the reverse.
BUILT_IN = {"PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "TRIGGER_NAME",
            "COMMIT_SHA", "REVISION_ID", "SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME",
            "BRANCH_NAME", "TAG_NAME", "REF_NAME", "TRIGGER_BUILD_CONFIG_PATH",
            "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT"}
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def build_config(path, trigger_kind):
    [config] = load(path)
    keys(path, config, BUILD)
    declared = config.get("substitutions") or {}
    for name in declared:
        if not re.fullmatch(r"_[A-Z0-9_]+", name):
            error(path, f"user substitution {name!r} must be _UPPER_CASE")
    ids = []
    for number, step in enumerate(config.get("steps") or []):
        where = f"{path}: steps[{number}] ({step.get('id', step.get('name'))})"
        keys(where, step, STEP)
        if "name" not in step:
            error(where, "no name (the builder image)")
        for wait in step.get("waitFor") or []:
            if wait != "-" and wait not in ids:
                error(where, f"waitFor {wait!r} is not an earlier step's id")
        if "id" in step:
            ids.append(step["id"])
    options = keys(f"{path}: options", config.get("options") or {}, OPTIONS)
    if options.get("machineType", "UNSPECIFIED") not in MACHINE_TYPES:
        error(path, f"options.machineType {options['machineType']!r}")
    if options.get("logging", "LEGACY") not in LOGGING:
        error(path, f"options.logging {options['logging']!r}")
    if not config.get("steps"):
        error(path, "no steps")

    # Cloud Build refuses a build whose template names a user substitution it was not
    # given, or is given one it never uses (unless ALLOW_LOOSE): `$$` is a literal `$`.
    used = set()
    for text in strings({k: v for k, v in config.items() if k != "substitutions"}):
        for match in VARIABLE.finditer(text.replace("$$", "")):
            used.add(match.group(1) or match.group(2))
    for name in sorted(used):
        if name.startswith("_"):
            if name not in declared:
                error(path, f"${name} is used but not in substitutions")
        elif name not in BUILT_IN:
            error(path, f"${name} is not a Cloud Build substitution (write $${name} for the shell)")
    for name in sorted(set(declared) - used):
        error(path, f"substitution {name} is never used")
    wrong = {"tag": {"BRANCH_NAME"}, "branch": {"TAG_NAME"}}[trigger_kind] & used
    if wrong:
        error(path, f"built by a {trigger_kind} trigger, which leaves {sorted(wrong)} empty")

    # Secret Manager: each step's secretEnv is named by availableSecrets, and each secret
    # there is some step's (Cloud Build refuses both).
    available = keys(f"{path}: availableSecrets", config.get("availableSecrets") or {},
                     {"secretManager", "inline"})
    secrets = set()
    for number, secret in enumerate(available.get("secretManager") or []):
        keys(f"{path}: availableSecrets.secretManager[{number}]", secret, {"versionName", "env"})
        if not re.fullmatch(r"projects/[^/]+/secrets/[A-Za-z0-9_-]+/versions/(latest|\d+)",
                            secret.get("versionName", "")):
            error(path, f"availableSecrets: versionName {secret.get('versionName')!r}")
        secrets.add(secret.get("env"))
    wanted = {name for step in config.get("steps") or [] for name in step.get("secretEnv") or []}
    for name in sorted(wanted - secrets):
        error(path, f"secretEnv {name} is in no availableSecrets")
    for name in sorted(secrets - wanted):
        error(path, f"availableSecrets {name} is no step's secretEnv")
    for step in config.get("steps") or []:
        if not re.fullmatch(r"\d+(\.\d+)?s", str(step.get("timeout", "1s"))):
            error(path, f"step {step.get('id')}: timeout {step['timeout']!r} (seconds, as 600s)")
    return config


# --- Cloud Build: the triggers -------------------------------------------------------------
TRIGGER = {"name", "description", "tags", "github", "triggerTemplate", "filename",
           "substitutions", "serviceAccount", "includeBuildLogs", "includedFiles",
           "ignoredFiles", "disabled", "filter", "approvalConfig", "repositoryEventConfig",
           "sourceToBuild", "gitFileSource", "build", "autodetect"}
GITHUB = {"owner", "name", "push", "pullRequest", "installationId", "enterpriseConfigResourceName"}
PUSH = {"branch", "tag", "invertRegex"}

triggers, approved = {}, set()
for name in sorted(os.listdir("deploy/cloudbuild/triggers")):
    path = f"deploy/cloudbuild/triggers/{name}"
    [trigger] = load(path)
    keys(path, trigger, TRIGGER)
    github = keys(f"{path}: github", trigger.get("github") or {}, GITHUB)
    push = keys(f"{path}: github.push", github.get("push") or {}, PUSH)
    if len(push) != 1 or not {"branch", "tag"} & set(push):
        error(path, "github.push needs exactly one of branch, tag")
    for pattern in push.values():
        re.compile(pattern)
    if not os.path.isfile(trigger.get("filename", "")):
        error(path, f"filename {trigger.get('filename')!r} is not a file of the repository")
        continue
    kind = "tag" if "tag" in push else "branch"
    config = build_config(trigger["filename"], kind)
    for key in set(trigger.get("substitutions") or {}) - set(config.get("substitutions") or {}):
        error(path, f"substitution {key} is not one {trigger['filename']} declares")
    triggers[trigger["name"]] = (kind, push.get("branch") or push.get("tag"), trigger["filename"])
    approval = keys(f"{path}: approvalConfig", trigger.get("approvalConfig") or {},
                    {"approvalRequired"})
    if approval.get("approvalRequired") is True:
        approved.add(trigger["filename"])
configs = {f for _, _, f in triggers.values()}

if not any(k == "branch" and re.fullmatch(p, "main") and f == "cloudbuild.yaml"
           for k, p, f in triggers.values()):
    error("deploy/cloudbuild/triggers", "no trigger runs cloudbuild.yaml on a push to main")
release_tags = [p for k, p, f in triggers.values() if k == "tag"]
if not release_tags or not all(re.fullmatch(p, "v1.2.3") and not re.fullmatch(p, "v1.2")
                               for p in release_tags):
    error("deploy/cloudbuild/triggers", "no tag trigger that takes v1.2.3 (and only X.Y.Z)")

# --- skaffold ------------------------------------------------------------------------------
SKAFFOLD = {"apiVersion", "kind", "metadata", "requires", "build", "test", "render",
            "manifests", "deploy", "portForward", "resourceSelector", "verify",
            "customActions", "profiles"}
PROFILE = {"name", "activation", "requiresAllActivations", "patches", "build", "test",
           "manifests", "deploy", "portForward", "resourceSelector", "verify", "customActions"}
MANIFESTS = {"rawYaml", "kustomize", "helm", "kpt", "transform", "validate", "hooks",
             "kubectl"}
KUSTOMIZE = {"paths", "buildArgs"}

[skaffold] = load("deploy/skaffold.yaml")
keys("deploy/skaffold.yaml", skaffold, SKAFFOLD)
if not re.fullmatch(r"skaffold/v4beta\d+", str(skaffold.get("apiVersion"))) or \
        skaffold.get("kind") != "Config":
    error("deploy/skaffold.yaml", "apiVersion skaffold/v4beta<n>, kind Config expected")
profiles = {}
for section in [skaffold] + list(skaffold.get("profiles") or []):
    where = f"deploy/skaffold.yaml: profile {section.get('name', '(top level)')}"
    if section is not skaffold:
        keys(where, section, PROFILE)
    manifests = keys(f"{where}: manifests", section.get("manifests") or {}, MANIFESTS)
    kustomize = keys(f"{where}: manifests.kustomize", manifests.get("kustomize") or {}, KUSTOMIZE)
    for kpath in kustomize.get("paths") or []:
        if not os.path.isfile(os.path.join("deploy", kpath, "kustomization.yaml")):
            error(where, f"kustomize path {kpath!r} (from deploy/) has no kustomization.yaml")
    if section is not skaffold:
        profiles[section["name"]] = kustomize.get("paths") or []
if set((skaffold.get("deploy") or {}).keys()) != {"kubectl"}:
    error("deploy/skaffold.yaml", "deploy must be kubectl (what Cloud Deploy runs for GKE)")

rendered = sys.argv[1]


def workloads(profile):
    return load(os.path.join(rendered, f"{profile}.yaml"))


def images(docs):
    for doc in docs:
        spec = (doc.get("spec") or {}).get("template", {}).get("spec") or {}
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            yield doc["kind"], doc["metadata"]["name"], container["image"]


for profile in profiles:
    # `--images=mall=<registry>/mall@sha256:...` replaces the image named mall (any tag).
    mall = [i for i in images(workloads(profile)) if re.fullmatch(r"mall(:[\w.-]+)?", i[2])]
    if len(mall) < 7:
        error(f"profile {profile}", f"{len(mall)} containers run the image `mall`, 7 expected")

# The dev overlay as cloudbuild.yaml's deploy-dev step applies it: every `mall` is the digest.
digest = [i for i in images(load(os.path.join(rendered, "dev-digest.yaml")))
          if "/mall" in i[2] or i[2].startswith("mall")]
wanted = os.environ["DIGEST_IMAGE"]
for kind, name, image in digest:
    if image != wanted:
        error("cloudbuild.yaml deploy-dev", f"{kind}/{name} runs {image}, not {wanted}")
if len(digest) < 7:
    error("cloudbuild.yaml deploy-dev", f"{len(digest)} containers run the image, 7 expected")

# --- Cloud Deploy --------------------------------------------------------------------------
PIPELINE = {"apiVersion", "kind", "metadata", "description", "serialPipeline", "suspended"}
TARGET = {"apiVersion", "kind", "metadata", "description", "requireApproval", "gke",
          "anthosCluster", "run", "multiTarget", "customTarget", "associatedEntities",
          "deployParameters", "executionConfigs"}
STAGE = {"targetId", "profiles", "strategy", "deployParameters"}

docs = load("deploy/clouddeploy.yaml")
pipelines = [d for d in docs if d.get("kind") == "DeliveryPipeline"]
targets = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Target"}
for doc in docs:
    where = f"deploy/clouddeploy.yaml: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
    if doc.get("apiVersion") != "deploy.cloud.google.com/v1":
        error(where, f"apiVersion {doc.get('apiVersion')!r}")
    if doc.get("kind") not in ("DeliveryPipeline", "Target"):
        error(where, "kind must be DeliveryPipeline or Target")
    keys(where, doc, PIPELINE if doc.get("kind") == "DeliveryPipeline" else TARGET)
    if doc.get("kind") == "Target" and not re.fullmatch(
            r"projects/[^/]+/locations/[^/]+/clusters/[a-z][-a-z0-9]*",
            (doc.get("gke") or {}).get("cluster", "")):
        error(where, "gke.cluster must be projects/P/locations/L/clusters/NAME")
if len(pipelines) != 1:
    error("deploy/clouddeploy.yaml", "one DeliveryPipeline expected")
else:
    stages = pipelines[0]["serialPipeline"]["stages"]
    for stage in stages:
        where = f"deploy/clouddeploy.yaml: stage {stage.get('targetId')}"
        keys(where, stage, STAGE)
        if stage.get("targetId") not in targets:
            error(where, "no Target of that name in the file")
        for profile in stage.get("profiles") or []:
            if profile not in profiles:
                error(where, f"profile {profile!r} is not in deploy/skaffold.yaml")
    if [s.get("targetId") for s in stages] != ["dev", "prod"]:
        error("deploy/clouddeploy.yaml", "stages must be dev, then prod")
    else:
        if not targets["prod"].get("requireApproval") or targets["dev"].get("requireApproval"):
            error("deploy/clouddeploy.yaml", "prod, and only prod, requires an approval")
        canary = ((stages[1].get("strategy") or {}).get("canary")) or {}
        percentages = (canary.get("canaryDeployment") or {}).get("percentages") or []
        if not percentages or percentages != sorted(set(percentages)) or \
                not all(0 < p < 100 for p in percentages):
            error("deploy/clouddeploy.yaml", f"prod canary percentages {percentages!r}")
        networking = (((canary.get("runtimeConfig") or {}).get("kubernetes") or {})
                      .get("serviceNetworking") or {})
        prod = {(d["kind"], d["metadata"]["name"]): d for d in workloads(stages[1]["profiles"][0])}
        deployment = prod.get(("Deployment", networking.get("deployment")))
        service = prod.get(("Service", networking.get("service")))
        if not deployment or not service:
            error("deploy/clouddeploy.yaml", f"serviceNetworking {networking} names no "
                  "Deployment and Service of the rendered prod profile")
        else:
            labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
            selector = service["spec"].get("selector") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                error("deploy/clouddeploy.yaml",
                      f"Service {service['metadata']['name']} does not select the pods of "
                      f"Deployment {deployment['metadata']['name']}")

# --- order's canary in the release build ----------------------------------------------------
# deploy/canary.sh runs in a step of the release build that the Cloud Deploy release waits
# for, against the cluster of the Cloud Deploy target of its environment, with a step
# timeout that leaves the script room to clean up after its own deadline; the trigger asks
# for an approval, since the build changes prod. What the script does is played through by
# .ci/pipeline-checks-canary.py.
RELEASE = "deploy/cloudbuild/release.yaml"
[release_build] = load(RELEASE)
steps = release_build.get("steps") or []
ids = [step.get("id") for step in steps]


def needs(index):
    """The indexes of the steps that step `index` waits for, directly or not."""
    wait = steps[index].get("waitFor")
    direct = set(range(index)) if wait is None else {ids.index(w) for w in wait if w in ids}
    return direct.union(*(needs(i) for i in direct)) if direct else set()


def script(step):
    return "\n".join(str(a) for a in step.get("args") or [])


canary_steps = [i for i, step in enumerate(steps) if "deploy/canary.sh" in script(step)]
publish = [i for i, step in enumerate(steps) if "gcloud deploy releases create" in script(step)]
if len(canary_steps) != 1 or len(publish) != 1:
    error(RELEASE, "one step runs deploy/canary.sh and one `gcloud deploy releases create`")
else:
    at, step = canary_steps[0], steps[canary_steps[0]]
    where = f"{RELEASE}: step {step.get('id')}"
    if at not in needs(publish[0]):
        error(where, "the Cloud Deploy release does not wait for it")
    if not any("docker push" in script(steps[i]) for i in needs(at)):
        error(where, "it does not wait for the image to be pushed")
    call = re.search(r"deploy/canary\.sh (\S+) (\S+) ", script(step))
    cluster = re.search(r"get-credentials (\S+)", script(step))
    declared = release_build.get("substitutions") or {}
    cluster = cluster and re.sub(r"\$\{?(_[A-Z0-9_]+)\}?",
                                 lambda m: str(declared.get(m[1])), cluster[1])
    if not call or not cluster:
        error(where, "no `deploy/canary.sh SERVICE ENV` or no `get-credentials CLUSTER`")
    else:
        service, environment = call[1], call[2]
        if not os.path.isfile(f"deploy/k8s/canary/{environment}/kustomization.yaml"):
            error(where, f"no deploy/k8s/canary/{environment}")
        if not os.path.isfile(f"deploy/k8s/canary/{service}/kustomization.yaml"):
            error(where, f"no deploy/k8s/canary/{service}")
        target = (targets.get(environment) or {}).get("gke", {}).get("cluster", "")
        if target.rsplit("/", 1)[-1] != cluster:
            error(where, f"runs in cluster {cluster}, not the one of Cloud Deploy's target "
                  f"{environment} ({target})")
    deadline = int(re.search(r"CANARY_DEADLINE_SECS:-(\d+)", open("deploy/canary.sh").read())[1])
    # The deadline counts from the script's start; after it may come the stable roll (15
    # min), its undo (15) and the canary's deletion (5).
    timeout = float(str(step.get("timeout", "600s")).rstrip("s"))
    if timeout < deadline + 35 * 60:
        error(where, f"timeout {timeout:.0f} s leaves deploy/canary.sh (deadline {deadline} s) "
              "too little room to finish or clean up")
    if float(str(release_build.get("timeout", "600s")).rstrip("s")) < timeout + 3600:
        error(RELEASE, "the build's timeout leaves less than an hour for the tests and the image")
    if RELEASE not in approved:
        error(RELEASE, "changes prod (order's canary), but its trigger asks for no approval")

if errors:
    sys.exit("pipeline files:\n  " + "\n  ".join(errors))
print(f"pipeline files: {len(configs)} build configs, {len(triggers)} triggers, skaffold profiles "
      f"{', '.join(profiles)}, {len(docs)} Cloud Deploy resources: consistent")
