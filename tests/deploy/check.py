#!/usr/bin/env python3
"""check.py — tests of the Helm chart, the container image file and the CLI contract they rely on,
without helm, a cluster or a Docker engine (python3 standard library + the Go renderer in render/).

  check.py chart   --go GO --work DIR          render every case, check schemas and semantics
  check.py env     --go GO --work DIR [--binary PATH]   SHARDSERVE_* and --flags used by the chart exist
  check.py docker                              the Dockerfile's static rules

Route: render/ (Go, stdlib) renders the chart like `helm template`, validates merged values against
values.schema.json (as helm does), and turns every rendered document into JSON with a strict YAML
parser (so "parses" means parses); `render validate` checks each object against the CRD schemas in
shared/k8s-schemas or tests/deploy/schemas/builtin.json. This file does the semantic checks on that JSON.
Exit status: 0 all passed, 1 a failure, 77 skipped (no go toolchain)."""
import argparse
import contextlib
import io
import glob
import json
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
CHART = os.path.join(ROOT, "deploy", "helm", "shardserve")
CRDS = os.environ.get("SS_K8S_SCHEMAS", os.path.normpath(os.path.join(ROOT, "..", "shared", "k8s-schemas")))
BUILTIN = os.path.join(HERE, "schemas", "builtin.json")
QUEUE_RULE = ("rate(nv_inference_queue_duration_us[1m]) / "
              "clamp_min(rate(nv_inference_compute_infer_duration_us[1m]), 1)")


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}" + (f"\n      {detail}" if detail else ""))
        return ok

    def done(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 else 1


def build_renderer(go, work):
    env = dict(os.environ, GOCACHE=os.path.join(work, "gocache"), GOPATH=os.path.join(work, "gopath"),
               GOFLAGS="-mod=mod", GO111MODULE="on", CGO_ENABLED="0")
    src = os.path.join(HERE, "render")
    exe = os.path.join(work, "render")
    r = subprocess.run([go, "build", "-o", exe, "."], cwd=src, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"go build of tests/deploy/render failed:\n{r.stderr}")
    return exe, env, src


def render(exe, values_files, extra=()):
    args = [exe, "template", CHART, "--name", "rel", "--namespace", "llm"]
    for f in values_files:
        args += ["-f", f]
    args += list(extra)
    return subprocess.run(args + ["--json"], capture_output=True, text=True)


# ---------------------------------------------------------------- helpers over rendered objects

def by_kind(docs, kind):
    return [d["object"] for d in docs if d["object"].get("kind") == kind]


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


def env_val(container, name):
    e = env_map(container).get(name)
    return None if e is None else e.get("value")


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def serving_pods(docs):
    """[(role, pod template, pods per replica)] for LWS leader/worker or the StatefulSet's one template."""
    out = []
    for lws in by_kind(docs, "LeaderWorkerSet"):
        t = lws["spec"]["leaderWorkerTemplate"]
        size = t.get("size", 1)
        out.append(("leader", t["leaderTemplate"], size))
        out.append(("worker", t["workerTemplate"], size))
    for sts in by_kind(docs, "StatefulSet"):
        out.append(("member", sts["spec"]["template"], sts["spec"]["replicas"]))
    return out


def quantity_int(v):
    if isinstance(v, (int, float)):
        return int(v)
    if isinstance(v, str) and re.fullmatch(r"[0-9]+", v):
        return int(v)
    return None


def all_containers(pod_spec):
    return pod_spec.get("initContainers", []) + pod_spec.get("containers", [])


# ---------------------------------------------------------------- semantic checks of one rendering

def check_semantics(rep, name, docs, values):
    """values: the merged values actually used (from the case file + defaults), for expectations."""
    kinds = sorted(d["object"]["kind"] for d in docs)
    device = values["device"]
    gpu_res = values["gpu"]["resourceName"]
    tp, pp, gpp = (values["parallelism"][k] for k in ("tp", "pp", "gpusPerPod"))
    workload = values["workload"]
    pods = serving_pods(docs)
    rep.check(pods, f"{name}: a serving workload is rendered", kinds)
    lwss, stss = by_kind(docs, "LeaderWorkerSet"), by_kind(docs, "StatefulSet")
    rep.check((len(lwss), len(stss)) == ((1, 0) if workload == "lws" else (0, 1)),
              f"{name}: exactly one {workload} workload", kinds)
    claim_names = set()
    leader_labels, worker_labels = None, []
    for role, tmpl, size in pods:
        spec, labels = tmpl["spec"], tmpl["metadata"]["labels"]
        where = f"{name}: {role} pod"
        if role in ("leader", "member") and leader_labels is None:
            leader_labels = labels
        if role == "worker":
            worker_labels.append(labels)
        c = [x for x in spec["containers"] if x["name"] == "shardserve"]
        if not rep.check(len(c) == 1, f"{where}: has the shardserve container"):
            continue
        c = c[0]
        rep.check(c.get("args", [None])[0] == "serve", f"{where}: runs `serve`", c.get("args"))
        # Resources: requests == limits; GPUs per pod x pods == tp x pp.
        res = c.get("resources", {})
        rep.check(res.get("requests") == res.get("limits") and res.get("requests"),
                  f"{where}: resource requests equal limits", res)
        e_tp, e_pp, e_gpp = (quantity_int(env_val(c, k)) for k in
                             ("SHARDSERVE_TP", "SHARDSERVE_PP", "SHARDSERVE_GPUS_PER_NODE"))
        rep.check((e_tp, e_pp, e_gpp) == (tp, pp, gpp), f"{where}: tp/pp/gpus-per-node env", (e_tp, e_pp, e_gpp))
        rep.check(e_gpp * size == e_tp * e_pp, f"{where}: gpus per pod x pods == tp x pp",
                  f"{e_gpp} x {size} != {e_tp} x {e_pp}")
        kv = env_val(c, "SHARDSERVE_KV_CACHE_DTYPE")
        rep.check(kv == values["server"]["kvCacheDtype"], f"{where}: SHARDSERVE_KV_CACHE_DTYPE = server.kvCacheDtype",
                  kv)
        qu = env_val(c, "SHARDSERVE_QUANTIZATION")
        rep.check(qu == values["server"]["quantization"], f"{where}: SHARDSERVE_QUANTIZATION = server.quantization",
                  qu)
        sn = env_val(c, "SHARDSERVE_SPECULATIVE_NGRAM")
        rep.check(sn == str(values["server"]["speculativeNgram"]),
                  f"{where}: SHARDSERVE_SPECULATIVE_NGRAM = server.speculativeNgram", sn)
        gpus = quantity_int(res.get("limits", {}).get(gpu_res))
        if device == "cuda":
            rep.check(gpus == e_gpp, f"{where}: {gpu_res} == gpus per node", f"{gpus} vs {e_gpp}")
            tol = spec.get("tolerations", [])
            rep.check({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tol,
                      f"{where}: tolerates the nvidia.com/gpu:NoSchedule taint, whatever its value", tol)
            if values["gpu"]["product"]:
                rep.check(spec.get("nodeSelector", {}).get("nvidia.com/gpu.product") == values["gpu"]["product"],
                          f"{where}: nodeSelector nvidia.com/gpu.product", spec.get("nodeSelector"))
        else:
            rep.check(gpus is None and "nvidia.com/gpu.product" not in spec.get("nodeSelector", {}),
                      f"{where}: cpu device asks for no GPU", res)
        # Ports, probes and HTTP: leaders (and StatefulSet members) listen, workers do not.
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        probes = {k: c.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe") if c.get(k)}
        if role == "worker":
            rep.check(not ports and not probes, f"{where}: no HTTP ports or probes on workers", (ports, probes))
        else:
            want = {"http": values["server"]["port"], "metrics": values["server"]["metricsPort"],
                    "rendezvous": values["server"]["rendezvousPort"]}
            rep.check(ports == want, f"{where}: ports http/metrics/rendezvous", ports)
            rep.check(str(ports.get("http")) == env_val(c, "SHARDSERVE_PORT") and
                      str(ports.get("metrics")) == env_val(c, "SHARDSERVE_METRICS_PORT"),
                      f"{where}: container ports match SHARDSERVE_PORT/METRICS_PORT")
        if role == "leader":
            rep.check(set(probes) == {"startupProbe", "readinessProbe", "livenessProbe"}, f"{where}: three probes",
                      list(probes))
            for k, p in probes.items():
                hg = p.get("httpGet", {})
                rep.check(hg.get("path", "").startswith("/v2/health/") and hg.get("port") in ("http", ports.get("http")),
                          f"{where}: {k} targets /v2/health/* on the HTTP port", hg)
            rep.check(probes.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/v2/health/ready",
                      f"{where}: readiness is /v2/health/ready")
            rep.check(probes.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/v2/health/live",
                      f"{where}: liveness is /v2/health/live")
        if role == "member":
            rep.check(not probes, f"{where}: StatefulSet pods carry no HTTP probes (workers would fail them)")
        # A worker pod waits for its leader (which prepares the engine first) as long as the leader's startup probe.
        st = values["probes"]["startup"]
        want_join = str(min(86400, max(600, st["periodSeconds"] * st["failureThreshold"])))
        rep.check(env_val(c, "SHARDSERVE_JOIN_TIMEOUT") == want_join,
                  f"{where}: SHARDSERVE_JOIN_TIMEOUT = the startup probe's budget", env_val(c, "SHARDSERVE_JOIN_TIMEOUT"))
        # preStop: the endpoint's removal spreads while the server still takes requests; the grace period covers it.
        pre = values["server"]["preStopSleepSeconds"]
        got_pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        rep.check(got_pre == (["sleep", str(pre)] if pre else None), f"{where}: preStop sleep of preStopSleepSeconds",
                  got_pre)
        rep.check(spec.get("terminationGracePeriodSeconds") == values["server"]["drainTimeoutSeconds"] + pre + 15,
                  f"{where}: terminationGracePeriodSeconds = drain + preStop + 15", spec.get("terminationGracePeriodSeconds"))
        for k, n in values.get("extraResources", {}).items():
            rep.check(str(res.get("requests", {}).get(k)) == str(n) and str(res.get("limits", {}).get(k)) == str(n),
                      f"{where}: extra resource {k} requested and limited", res)
        # Volumes: cache PVC, /dev/shm in memory, HF token as a file.
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        shm = vols.get(mounts.get("/dev/shm"), {})
        rep.check(shm.get("emptyDir", {}).get("medium") == "Memory", f"{where}: /dev/shm is an in-memory emptyDir", shm)
        cache = vols.get(mounts.get(values["cache"]["mountPath"]), {})
        claim = cache.get("persistentVolumeClaim", {}).get("claimName")
        rep.check(claim is not None and env_val(c, "SHARDSERVE_CACHE") == values["cache"]["mountPath"],
                  f"{where}: cache PVC mounted at SHARDSERVE_CACHE")
        claim_names.add(claim)
        check_token_file(rep, where, c, vols)
        check_security(rep, where, spec, c)
        rep.check("NCCL_NVLS_ENABLE" not in env_map(c), f"{where}: NCCL_NVLS_ENABLE is not forced")
        if values["nccl"]["socketIfname"]:
            rep.check(env_val(c, "NCCL_SOCKET_IFNAME") == values["nccl"]["socketIfname"], f"{where}: NCCL_SOCKET_IFNAME")
        else:
            rep.check("NCCL_SOCKET_IFNAME" not in env_map(c), f"{where}: NCCL_SOCKET_IFNAME unset by default")
        rep.check(spec.get("schedulerName") == (values["schedulerName"] or None), f"{where}: schedulerName",
                  spec.get("schedulerName"))
        if values["server"]["apiKeySecret"]["name"]:
            ref = env_map(c).get("SHARDSERVE_API_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {})
            rep.check(ref.get("name") == values["server"]["apiKeySecret"]["name"], f"{where}: API key from its Secret")

    for wl in lwss + stss:
        rep.check(wl["metadata"]["labels"].get("kueue.x-k8s.io/queue-name") == (values["kueueQueueName"] or None),
                  f"{name}: Kueue queue label on the workload object iff set")

    # StatefulSet pods get their pod-name label from the controller: pod 0 leads, the rest are workers.
    for sts in stss:
        base, n = sts["spec"]["template"]["metadata"]["labels"], sts["metadata"]["name"]
        leader_labels = dict(base, **{"statefulset.kubernetes.io/pod-name": f"{n}-0"})
        worker_labels += [dict(base, **{"statefulset.kubernetes.io/pod-name": f"{n}-{i}"})
                          for i in range(1, sts["spec"]["replicas"])]

    # LeaderWorkerSet specifics.
    for lws in lwss:
        t = lws["spec"]["leaderWorkerTemplate"]
        rep.check(t.get("restartPolicy") == "RecreateGroupOnPodRestart", f"{name}: LWS restartPolicy")
        rep.check(lws["spec"].get("startupPolicy") == "LeaderCreated", f"{name}: LWS startupPolicy LeaderCreated")
        rep.check(t["size"] == tp * pp // gpp, f"{name}: LWS size = tp*pp/gpusPerPod", t["size"])
        ann = lws["metadata"].get("annotations", {})
        topo = values["lws"]["exclusiveTopology"]
        rep.check(ann.get("leaderworkerset.sigs.k8s.io/exclusive-topology") == (topo or None),
                  f"{name}: exclusive-topology annotation", ann)
        if values["autoscaling"]["enabled"]:
            rep.check("replicas" not in lws["spec"], f"{name}: replicas left to the HPA")
        else:
            rep.check(lws["spec"].get("replicas") == values["replicas"], f"{name}: LWS replicas")
        for lab in worker_labels:
            rep.check(not selects(lab, leader_labels) and lab != leader_labels, f"{name}: leader/worker labels differ")

    # LWS makes a headless Service named after itself for its pods' DNS names, and none if the name is taken
    # (helper-85: the HTTP Service took it, so LWS_LEADER_ADDRESS never resolved and a multi-pod group never met).
    services = by_kind(docs, "Service")
    for lws in lwss:
        taken = [x["metadata"]["name"] for x in services if x["metadata"]["name"] == lws["metadata"]["name"]]
        rep.check(not taken, f"{name}: no Service takes the LWS's name (LWS's own headless Service)", taken)

    # StatefulSet specifics: parallel start, headless rendezvous service, rank from the ordinal.
    for sts in stss:
        s = sts["spec"]
        rep.check(s.get("podManagementPolicy") == "Parallel", f"{name}: StatefulSet starts pods in parallel")
        rep.check(selects(s["selector"]["matchLabels"], s["template"]["metadata"]["labels"]),
                  f"{name}: StatefulSet selector matches its template")
        head = [x for x in services if x["metadata"]["name"] == s.get("serviceName")]
        ok = rep.check(len(head) == 1, f"{name}: StatefulSet serviceName is a rendered Service", s.get("serviceName"))
        if ok:
            h = head[0]["spec"]
            rep.check(h.get("clusterIP") == "None" and h.get("publishNotReadyAddresses") is True,
                      f"{name}: rendezvous Service is headless and publishes unready pods")
            rep.check([p["port"] for p in h["ports"]] == [values["server"]["rendezvousPort"]],
                      f"{name}: headless Service carries only the rendezvous port")
        c = s["template"]["spec"]["containers"][0]
        rank = env_map(c).get("SHARDSERVE_NODE_RANK", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        rep.check(rank == "metadata.labels['apps.kubernetes.io/pod-index']", f"{name}: node rank from the pod index", rank)
        addr = env_val(c, "SHARDSERVE_LEADER_ADDR") or ""
        want = f"{sts['metadata']['name']}-0.{s.get('serviceName')}.llm.svc:{values['server']['rendezvousPort']}"
        rep.check(addr == want, f"{name}: leader address is pod 0 through the headless Service", addr)
        rep.check(quantity_int(env_val(c, "SHARDSERVE_NNODES")) == s["replicas"], f"{name}: SHARDSERVE_NNODES = pods")

    # The HTTP/metrics Service selects leaders only.
    http = [x for x in services if x["spec"].get("clusterIP") != "None"]
    rep.check(len(http) == 1, f"{name}: one HTTP Service", [x["metadata"]["name"] for x in http])
    for svc in http:
        sel = svc["spec"]["selector"]
        rep.check(selects(sel, leader_labels), f"{name}: Service selects the leader", sel)
        for lab in worker_labels:
            rep.check(not selects(sel, lab), f"{name}: Service does not select workers (no HTTP there)")
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
        rep.check(ports == {"http": (values["server"]["port"], "http"),
                            "metrics": (values["server"]["metricsPort"], "metrics")},
                  f"{name}: Service ports 8000/8002 -> named container ports", ports)
        if workload == "statefulset":
            rep.check(sel.get("statefulset.kubernetes.io/pod-name", "").endswith("-0"),
                      f"{name}: StatefulSet HTTP Service selects pod 0 only", sel)

    # Cache claim: created here, ReadWriteMany, or an existing one.
    pvcs = by_kind(docs, "PersistentVolumeClaim")
    existing = values["cache"]["existingClaim"]
    if existing:
        rep.check(not pvcs and claim_names == {existing}, f"{name}: existing claim used, none created")
    else:
        rep.check(len(pvcs) == 1 and claim_names == {pvcs[0]["metadata"]["name"]},
                  f"{name}: pods mount the chart's PVC", (claim_names, [p["metadata"]["name"] for p in pvcs]))
        for p in pvcs:
            rep.check(p["spec"]["accessModes"] == [values["cache"]["accessMode"]], f"{name}: PVC access mode")

    # Prepare Job: CPU only, same claim, writes under the lock via `prepare`.
    jobs = by_kind(docs, "Job")
    rep.check(len(jobs) == (1 if values["prepare"]["enabled"] else 0), f"{name}: prepare Job present iff enabled")
    for job in jobs:
        spec = job["spec"]["template"]["spec"]
        rep.check(spec.get("restartPolicy") in ("Never", "OnFailure"), f"{name}: Job restartPolicy Never/OnFailure")
        for c in all_containers(spec):
            res = c.get("resources", {})
            rep.check(not any("gpu" in k for part in res.values() for k in part),
                      f"{name}: prepare Job requests no GPU", res)
            rep.check(res.get("requests") == res.get("limits"), f"{name}: prepare Job requests == limits")
            rep.check(c.get("args", [None])[0] == "prepare", f"{name}: Job runs `prepare`", c.get("args"))
            vols = {v["name"]: v for v in spec.get("volumes", [])}
            check_token_file(rep, f"{name}: prepare Job", c, vols)
            check_security(rep, f"{name}: prepare Job", spec, c)
            want = {"SHARDSERVE_MODEL": values["model"]["id"], "SHARDSERVE_REVISION": values["model"]["revision"],
                    "SHARDSERVE_DTYPE": values["model"]["dtype"], "SHARDSERVE_TP": str(tp), "SHARDSERVE_PP": str(pp),
                    "SHARDSERVE_CACHE": values["cache"]["mountPath"]}
            got = {k: env_val(c, k) for k in want}
            rep.check(got == want, f"{name}: Job prepares exactly what the pods serve", got)
        claim = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
        rep.check(set(claim) == claim_names, f"{name}: Job writes the claim the pods read", claim)
        rep.check("nvidia.com/gpu.product" not in spec.get("nodeSelector", {}), f"{name}: Job not pinned to GPU nodes")

    # Monitoring and autoscaling.
    pms = by_kind(docs, "PodMonitor")
    rep.check(len(pms) == int(values["monitoring"]["podMonitor"]["enabled"]), f"{name}: PodMonitor iff enabled")
    for pm in pms:
        sel = pm["spec"]["selector"]["matchLabels"]
        rep.check(selects(sel, leader_labels) and not any(selects(sel, w) for w in worker_labels),
                  f"{name}: PodMonitor scrapes leaders only", sel)
        rep.check([(e["port"], e["path"]) for e in pm["spec"]["podMetricsEndpoints"]] == [("metrics", "/metrics")],
                  f"{name}: PodMonitor endpoint metrics:/metrics")
    rules = by_kind(docs, "PrometheusRule")
    rep.check(len(rules) == int(values["monitoring"]["prometheusRule"]["enabled"]), f"{name}: PrometheusRule iff enabled")
    for r in rules:
        recs = {x.get("record"): x.get("expr") for g in r["spec"]["groups"] for x in g["rules"]}
        rep.check(recs.get("triton:queue_compute:ratio") == QUEUE_RULE, f"{name}: recording rule queue/compute", recs)
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    rep.check(len(hpas) == int(values["autoscaling"]["enabled"]), f"{name}: HPA iff enabled")
    for h in hpas:
        ref = h["spec"]["scaleTargetRef"]
        rep.check(lwss and ref == {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                                   "name": lwss[0]["metadata"]["name"]}, f"{name}: HPA targets the LWS", ref)
        m = h["spec"]["metrics"][0]
        body = m.get(m["type"].lower(), {})
        rep.check(body.get("metric", {}).get("name") == values["autoscaling"]["metric"]["name"],
                  f"{name}: HPA metric name", m)
        rep.check(h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"], f"{name}: HPA min <= max")
    # Names: everything named for this release fits what LWS derives from it.
    for d in docs:
        n = d["object"]["metadata"]["name"]
        if d["object"]["kind"] in ("LeaderWorkerSet", "StatefulSet"):
            rep.check(len(n) <= 40, f"{name}: workload name {n!r} within 40 characters")


def check_token_file(rep, where, c, vols):
    path = env_val(c, "SHARDSERVE_HF_TOKEN_FILE")
    if path is None:
        return
    mounts = [m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")]
    ok = len(mounts) == 1 and "secret" in vols.get(mounts[0]["name"], {})
    rep.check(ok, f"{where}: --hf-token-file {path} is a file of a mounted Secret")
    if ok:
        key = path[len(mounts[0]["mountPath"].rstrip("/")) + 1:]
        rep.check(mounts[0].get("readOnly") is True, f"{where}: token mount read-only")
        rep.check("HF_TOKEN" not in env_map(c), f"{where}: token not in the environment")
        rep.check(key and "/" not in key, f"{where}: token path names the Secret key", key)


def check_security(rep, where, spec, c):
    sc = spec.get("securityContext", {})
    rep.check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, f"{where}: pod runs as non-root", sc)
    csc = c.get("securityContext", {})
    rep.check(csc.get("allowPrivilegeEscalation") is False and "ALL" in csc.get("capabilities", {}).get("drop", []),
              f"{where}: no privilege escalation, capabilities dropped", csc)
    rep.check(spec.get("automountServiceAccountToken") is False, f"{where}: no service account token")


# ---------------------------------------------------------------- cases

def merged_values(exe, files, work):
    """The values the chart saw: defaults overlaid by the case files (same merge as the renderer)."""
    out = subprocess.run([exe, "tojson", os.path.join(CHART, "values.yaml")] + list(files),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    docs = json.loads(out.stdout)

    def merge(a, b):
        r = dict(a)
        for k, v in b.items():
            if v is None:
                r.pop(k, None)
            elif isinstance(v, dict) and isinstance(r.get(k), dict):
                r[k] = merge(r[k], v)
            else:
                r[k] = v
        return r
    v = docs[0]
    for d in docs[1:]:
        v = merge(v, d)
    return v


def expect_error(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"#\s*expect-error:\s*(.+)", line)
            if m:
                return m.group(1).strip()
    return None


def cross_check_yaml(rep, exe, files, docs_json):
    """With PyYAML installed (not required), parse the rendered text independently and compare."""
    try:
        import yaml  # noqa: F401 (optional)
    except ImportError:
        return
    args = [exe, "template", CHART, "--name", "rel", "--namespace", "llm"]
    for f in files:
        args += ["-f", f]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    theirs = [d for d in yaml.safe_load_all(text) if d is not None]
    ours = [d["object"] for d in docs_json]
    rep.check(json.loads(json.dumps(theirs)) == ours, f"{files}: PyYAML reads the output as our parser does")


def cmd_chart(args):
    rep = Report()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    exe, env, src = build_renderer(args.go, work)
    r = subprocess.run([args.go, "test", "-count=1", "."], cwd=src, env=env, capture_output=True, text=True)
    rep.check(r.returncode == 0, "go test of the renderer (YAML parser, Helm functions, validator)", r.stdout + r.stderr)
    if not os.path.isdir(CRDS):
        print(f"FAIL: CRD schemas not found at {CRDS} (set SS_K8S_SCHEMAS)")
        return 1
    examples = sorted(glob.glob(os.path.join(CHART, "examples", "*.yaml")))
    rep.check([os.path.basename(e) for e in examples] ==
              ["llama-3-70b-tp8-pp2.yaml", "llama-3-70b-tp8.yaml", "llama-3-8b-tp1.yaml", "llama-3-8b-tp2.yaml"],
              "the four example values files exist", examples)
    cases = [("defaults", [])] + [(os.path.relpath(e, ROOT), [e]) for e in examples]
    negative = []
    for c in sorted(glob.glob(os.path.join(HERE, "cases", "*.yaml"))):
        (negative if expect_error(c) else cases).append((os.path.relpath(c, ROOT), [c]))
    for name, files in cases:
        r = render(exe, files)
        if not rep.check(r.returncode == 0, f"{name}: renders", r.stderr.strip()):
            continue
        docs = json.loads(r.stdout)
        path = os.path.join(work, re.sub(r"[^A-Za-z0-9.]+", "_", name) + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(docs, f)
        v = subprocess.run([exe, "validate", "--crds", CRDS, "--builtin", BUILTIN, path], capture_output=True, text=True)
        rep.check(v.returncode == 0, f"{name}: every object matches its schema (CRD or built-in)", v.stderr.strip())
        cross_check_yaml(rep, exe, files, docs)
        check_semantics(rep, name, docs, merged_values(exe, files, work))
    for name, files in negative:
        want = expect_error(files[0])
        r = render(exe, files)
        rep.check(r.returncode != 0 and want in r.stderr, f"{name}: refused with '{want}'",
                  f"rc={r.returncode} stderr={r.stderr.strip()[:400]}")
    # The semantic checks must be able to fail: each mutation of a good rendering must be caught.
    pp2 = os.path.join(CHART, "examples", "llama-3-70b-tp8-pp2.yaml")
    good = json.loads(render(exe, [pp2]).stdout)
    vals = merged_values(exe, [pp2], work)

    def lws_of(d):
        return [x for x in d if x["object"]["kind"] == "LeaderWorkerSet"][0]["object"]["spec"]["leaderWorkerTemplate"]

    def ctr(d, role):
        return lws_of(d)[role + "Template"]["spec"]["containers"][0]

    def job_ctr(d):
        return [x for x in d if x["object"]["kind"] == "Job"][0]["object"]["spec"]["template"]["spec"]["containers"][0]

    def svc(d):
        return [x for x in d if x["object"]["kind"] == "Service"][0]["object"]["spec"]

    mutations = {
        "GPU limit differs from request": lambda d: ctr(d, "leader")["resources"]["limits"].update({"nvidia.com/gpu": 4}),
        "group size wrong": lambda d: lws_of(d).update({"size": 3}),
        "worker listens on HTTP": lambda d: ctr(d, "worker").update({"ports": [{"name": "http", "containerPort": 8000}]}),
        "probe off /v2/health": lambda d: ctr(d, "leader")["livenessProbe"]["httpGet"].update({"path": "/healthz"}),
        "Service selects workers": lambda d: svc(d)["selector"].pop("app.kubernetes.io/component"),
        "Job asks for a GPU": lambda d: job_ctr(d)["resources"]["limits"].update({"nvidia.com/gpu": 1}),
        "Job prepares another revision": lambda d: [e.update({"value": "other"}) for e in job_ctr(d)["env"]
                                                    if e["name"] == "SHARDSERVE_REVISION"],
        "runs as root": lambda d: lws_of(d)["leaderTemplate"]["spec"]["securityContext"].update({"runAsUser": 0}),
        "shm on disk": lambda d: [v["emptyDir"].pop("medium") for v in lws_of(d)["workerTemplate"]["spec"]["volumes"]
                                  if v["name"] == "dshm"],
        "NVLS forced": lambda d: ctr(d, "worker")["env"].append({"name": "NCCL_NVLS_ENABLE", "value": "0"}),
        "KV cache dtype not passed": lambda d: ctr(d, "worker").update(
            {"env": [e for e in ctr(d, "worker")["env"] if e["name"] != "SHARDSERVE_KV_CACHE_DTYPE"]}),
        "quantization not passed": lambda d: ctr(d, "worker").update(
            {"env": [e for e in ctr(d, "worker")["env"] if e["name"] != "SHARDSERVE_QUANTIZATION"]}),
        "Service named as the LWS": lambda d: [x["object"]["metadata"].update({"name": x2["object"]["metadata"]["name"]})
                                               for x in d if x["object"]["kind"] == "Service"
                                               for x2 in d if x2["object"]["kind"] == "LeaderWorkerSet"],
        "worker join timeout not passed": lambda d: ctr(d, "worker").update(
            {"env": [e for e in ctr(d, "worker")["env"] if e["name"] != "SHARDSERVE_JOIN_TIMEOUT"]}),
        "no preStop on the leader": lambda d: ctr(d, "leader").pop("lifecycle"),
    }
    for what, mutate in mutations.items():
        docs = json.loads(json.dumps(good))
        mutate(docs)
        sub = Report()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            check_semantics(sub, "mutant", docs, vals)
        rep.check(sub.failed > 0, f"semantic checks catch: {what}")

    # The validator must be able to fail: break a rendered LWS in ways the CRD forbids.
    r = render(exe, [os.path.join(CHART, "examples", "llama-3-70b-tp8-pp2.yaml")])
    docs = json.loads(r.stdout)
    lws = [d for d in docs if d["object"]["kind"] == "LeaderWorkerSet"][0]["object"]
    lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "Always"
    lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["ports"] = [{"name": "x"}]
    lws["spec"]["startupPolicy_"] = "LeaderCreated"
    bad = os.path.join(work, "broken.json")
    with open(bad, "w", encoding="utf-8") as f:
        json.dump(docs, f)
    v = subprocess.run([exe, "validate", "--crds", CRDS, "--builtin", BUILTIN, bad], capture_output=True, text=True)
    for frag in ('restartPolicy: "Always" is not one of', 'missing required field "containerPort"',
                 "startupPolicy_: unknown field"):
        rep.check(v.returncode != 0 and frag in v.stderr, f"validator rejects a broken LWS: {frag}", v.stderr[-600:])
    return rep.done()


# ---------------------------------------------------------------- env contract

def source_flags(sub):
    """Flags a subcommand declares in src/cli/cmd_<sub>.c ({"name", SS_OPT_...} table entries)."""
    path = os.path.join(ROOT, "src", "cli", f"cmd_{sub}.c")
    with open(path, encoding="utf-8") as f:
        return set(re.findall(r'\{\s*"([a-z0-9-]+)"\s*,\s*SS_OPT_', f.read()))


def binary_env_names(binary, sub):
    r = subprocess.run([binary, sub, "--help"], capture_output=True, text=True, timeout=30)
    return set(re.findall(r"\b(SHARDSERVE_[A-Z0-9_]+)\b", r.stdout + r.stderr))


def cmd_env(args):
    rep = Report()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    exe, _, _ = build_renderer(args.go, work)
    files = [[]] + [[f] for f in sorted(glob.glob(os.path.join(HERE, "cases", "*.yaml"))) if not expect_error(f)]
    files += [[f] for f in sorted(glob.glob(os.path.join(CHART, "examples", "*.yaml")))]
    used = {}  # subcommand -> {env name or --flag}
    for fl in files:
        r = render(exe, fl)
        if not rep.check(r.returncode == 0, f"{fl}: renders", r.stderr):
            continue
        for d in json.loads(r.stdout):
            spec = find_pod_specs(d["object"])
            for s in spec:
                for c in all_containers(s):
                    a = c.get("args", [])
                    if not a:
                        continue
                    names = used.setdefault(a[0], set())
                    names.update(e["name"] for e in c.get("env", []) if e["name"].startswith("SHARDSERVE_"))
                    names.update(x.split("=")[0] for x in a[1:] if x.startswith("--"))
    rep.check(set(used) == {"serve", "prepare"}, "containers run `serve` and `prepare`", sorted(used))
    for sub, names in sorted(used.items()):
        flags = source_flags(sub)
        from_bin = binary_env_names(args.binary, sub) if args.binary else None
        for n in sorted(names):
            flag = n[2:] if n.startswith("--") else n[len("SHARDSERVE_"):].lower().replace("_", "-")
            rep.check(flag in flags, f"`shardserve {sub}` declares --{flag} (used as {n}) in src/cli/cmd_{sub}.c")
            if from_bin is not None and n.startswith("SHARDSERVE_"):
                rep.check(n in from_bin, f"`shardserve {sub} --help` lists {n}")
    return rep.done()


def find_pod_specs(obj):
    k = obj.get("kind")
    if k == "LeaderWorkerSet":
        t = obj["spec"]["leaderWorkerTemplate"]
        return [t["leaderTemplate"]["spec"], t["workerTemplate"]["spec"]]
    if k in ("StatefulSet", "Job", "Deployment"):
        return [obj["spec"]["template"]["spec"]]
    return []


# ---------------------------------------------------------------- Dockerfile

def dockerfile_instructions(text):
    """[(INSTRUCTION, args)] with continuation lines joined and comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        cur += (" " if cur else "") + s.rstrip("\\").strip()
        if not s.endswith("\\"):
            ins, _, rest = cur.partition(" ")
            out.append((ins.upper(), rest.strip()))
            cur = ""
    return out


def cmd_docker(_args):
    rep = Report()
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as f:
        text = f.read()
    ins = dockerfile_instructions(text)
    froms = [a for i, a in ins if i == "FROM"]
    rep.check(len(froms) >= 2, "multi-stage build", froms)
    rep.check(any(re.match(r"nvidia/cuda:\S+-devel-", a) for a in froms[:1]) or
              any(re.match(r"\$\{?CUDA", a) for a in froms[:1]), "first stage builds on a CUDA devel image", froms)
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    resolved = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), a) for a in froms]
    rep.check(re.match(r"nvidia/cuda:[0-9.]+-devel-ubuntu", resolved[0]) is not None, "build stage: nvidia/cuda devel",
              resolved[0])
    rep.check(re.match(r"nvidia/cuda:[0-9.]+-runtime-ubuntu", resolved[-1]) is not None, "run stage: nvidia/cuda runtime",
              resolved[-1])
    rep.check(all(":latest" not in a and ":" in a for a in resolved), "base images pinned to a tag (DL3006/DL3007)")
    last = max(i for i, (x, _) in enumerate(ins) if x == "FROM")
    final = ins[last:]
    users = [a for i, a in final if i == "USER"]
    rep.check(users and re.fullmatch(r"[0-9]+(:[0-9]+)?", users[-1]) and not users[-1].startswith("0"),
              "final stage runs as a numeric non-root USER", users)
    ep = [a for i, a in final if i == "ENTRYPOINT"]
    rep.check(len(ep) == 1 and json.loads(ep[0])[0].endswith("shardserve"), "ENTRYPOINT is shardserve (exec form)", ep)
    exposed = set(" ".join(a for i, a in final if i == "EXPOSE").split())
    rep.check({"8000", "8002", "29500"} <= exposed, "EXPOSE 8000 8002 29500", exposed)
    rep.check("NCCL_NVLS_ENABLE" not in "".join(a for i, a in ins if i in ("ENV", "ARG", "RUN")),
              "NCCL_NVLS_ENABLE not forced")
    copies = [a for i, a in final if i == "COPY"]
    rep.check(any("models/shardserve-demo" in a and "/opt/shardserve/models/" in a for a in copies),
              "demo model copied to /opt/shardserve/models/", copies)
    rep.check(sum("--from=" in a and "shardserve" in a for a in copies) >= 1, "the binary comes from the build stage")
    runs = [a for i, a in ins if i == "RUN"]
    for r in runs:
        if "apt-get install" in r:
            rep.check("--no-install-recommends" in r and "rm -rf /var/lib/apt/lists/*" in r and "apt-get update" in r,
                      "apt-get: update + install --no-install-recommends + clean lists in one RUN (DL3009/DL3015)", r)
        rep.check(not re.search(r"(^|&&|;)\s*cd\s", r), "no `cd` in RUN, WORKDIR instead (DL3003)", r)
        rep.check("sudo " not in r, "no sudo (DL3004)", r)
    runtime_run = " ".join(a for i, a in final if i == "RUN")
    for lib in ("libcjson", "libevent-2", "libevent-pthreads", "libpcre2-8", "libutf8proc", "libcurl4", "libopenblas",
                "libssl3", "libxxhash0", "libgomp1"):
        rep.check(lib in runtime_run, f"runtime image installs {lib}*")
    rep.check(all(i != "ADD" for i, _ in ins), "COPY, not ADD (DL3020)")
    rep.check(all(i != "MAINTAINER" for i, _ in ins), "no MAINTAINER (DL4000)")
    workdirs = [a for i, a in ins if i == "WORKDIR"]
    rep.check(all(w.startswith("/") for w in workdirs), "absolute WORKDIR (DL3000)", workdirs)
    if any("|" in r for r in runs):
        rep.check(any(i == "SHELL" and "pipefail" in a for i, a in ins), "pipes run under SHELL -o pipefail (DL4006)")
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as f:
        ignore = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    rep.check(any(x.startswith("build") for x in ignore), ".dockerignore leaves build folders out", ignore)
    rep.check(not any(x in ("models", "models/", "/models") for x in ignore), ".dockerignore keeps models/")
    return rep.done()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["chart", "env", "docker"])
    ap.add_argument("--go", default=shutil.which("go"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build-deploy-check"))
    ap.add_argument("--binary", help="the shardserve binary (env: also compare with its --help)")
    args = ap.parse_args()
    if args.what == "docker":
        return cmd_docker(args)
    if not args.go or not os.path.exists(args.go):
        print("SKIP: no go toolchain (scripts/install-deps.sh installs golang-go); chart tests not run")
        return 77
    return cmd_chart(args) if args.what == "chart" else cmd_env(args)


if __name__ == "__main__":
    sys.exit(main())
