"""Static checks of deploy/: the Dockerfile, compose.yaml, haproxy.cfg, the env example and
the Kubernetes manifests agree with the code (variable names, probe paths, ports, grace
periods, the build command). No Docker engine or cluster is needed. The image build
itself cannot run here, so its build stage is repeated on the host.

Run: /usr/bin/python3 -m pytest -q tests/system/test_deploy.py
"""
import math
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
HAPROXY = DEPLOY / "haproxy.cfg"
ENV_EXAMPLE = DEPLOY / "suppressd.env.example"

# Drain: the binary exits within this many seconds of SIGTERM (svc_main.c DRAIN_MS = 9 s).
EXIT_WITHIN_S = 10
# Variables that must only come from a Secret (they are, or can carry, credentials).
SECRET_VARS = {"INTERCOM_CLIENT_SECRET", "INTERCOM_ACCESS_TOKEN", "CIO_SITE_ID", "CIO_API_KEY",
               "CIO_WEBHOOK_SIGNING_KEY", "SUPPRESS_API_TOKENS", "REDIS_URL"}
# README configuration-table variables intentionally not in the ConfigMap or Secret, and why.
K8S_OMITTED = {
    "SUPPRESS_THREADS": "set in the Deployment from the container's CPU limit (resourceFieldRef)",
}
# The Debian packages the build stage needs: the -dev/toolchain part of tests/tools/deps.sh.
BUILD_PKGS = {"build-essential", "pkg-config", "libhiredis-dev", "libevent-dev",
              "libcurl4-openssl-dev", "libjansson-dev", "libssl-dev"}
RUNTIME_PKGS = {"libhiredis0.14", "libevent-2.1-7", "libevent-pthreads-2.1-7", "libcurl4",
                "libjansson4", "libssl3", "ca-certificates"}


# --------------------------------------------------------------------------- helpers

def service_vars():
    """Every environment variable the service reads."""
    cfg = (ROOT / "svc" / "svc_config.c").read_text()
    names = set(re.findall(r'\b(?:env|int_var)\("([A-Z][A-Z0-9_]*)"', cfg))
    main = (ROOT / "svc" / "svc_main.c").read_text()
    names |= set(re.findall(r'\bgetenv\("([A-Z][A-Z0-9_]*)"', main))
    return names


def readme_table_vars():
    """The variables named in the first column of README.md's configuration table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", first))
    return names


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_docs():
    docs = []
    for p in sorted(K8S.glob("*.yaml")):
        if p.name == "kustomization.yaml":
            continue
        docs += load_yaml_docs(p)
    return docs


def k8s_one(kind):
    found = [d for d in k8s_docs() if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def configmap():
    return k8s_one("ConfigMap")


def secret_data():
    s = k8s_one("Secret")
    data = dict(s.get("stringData") or {})
    data.update({k: "(base64)" for k in (s.get("data") or {})})
    return data


def deployment():
    return k8s_one("Deployment")


def container():
    cs = deployment()["spec"]["template"]["spec"]["containers"]
    assert len(cs) == 1
    return cs[0]


def container_port():
    ports = container()["ports"]
    assert len(ports) == 1
    return ports[0]


def resolve_port(port):
    """A probe or Service port (number or name) as the container port number."""
    p = container_port()
    if isinstance(port, int):
        return port
    assert port == p["name"], f"port name {port!r} is not the container's {p['name']!r}"
    return p["containerPort"]


def parse_env_file(path):
    """KEY=VALUE lines; commented-out assignments (`# KEY=...`) are returned as well so a
    typo in an example line is caught too. Returns (active dict, commented names)."""
    active, commented = {}, set()
    for raw in path.read_text().splitlines():
        line = raw.strip()
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            active[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^#\s*([A-Z][A-Z0-9_]*)=", line)
        if m:
            commented.add(m.group(1))
    return active, commented


def compose():
    docs = load_yaml_docs(COMPOSE)
    assert len(docs) == 1
    return docs[0]


def compose_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return env


def seconds(duration):
    """Compose durations: '15s', '1m30s', '500ms' or a number."""
    if isinstance(duration, (int, float)):
        return float(duration)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


def dockerfile_stages():
    """[(from_image, alias, [(instruction, args), ...]), ...] with continuations joined."""
    lines, buf = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        s = raw.strip()
        if s.startswith("#") and not buf:
            continue
        if s.startswith("#"):
            continue  # a comment inside a continued instruction
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        if buf.strip():
            lines.append(buf.strip())
        buf = ""
    stages = []
    for line in lines:
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            stages.append((m.group(1), m.group(2), []))
        elif stages:
            stages[-1][2].append((instr, args.strip()))
    return stages


def instrs(stage, name):
    return [a for i, a in stage[2] if i == name]


def apt_packages(stage):
    pkgs = set()
    for run in instrs(stage, "RUN"):
        for m in re.finditer(r"apt-get install ([^&;|]*)", run):
            pkgs |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


def suppressd_bin():
    for cand in (os.environ.get("SUPPRESSD_BIN"), ROOT / "bin" / "suppressd",
                 ROOT / "bin" / "suppressd-asan"):
        if cand and pathlib.Path(cand).is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def check_config(env):
    binary = suppressd_bin()
    if binary is None:
        pytest.skip("no built suppressd binary (make bin/suppressd)")
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            clean[k] = os.environ[k]
    clean.update({k: str(v) for k, v in env.items() if v is not None})
    return subprocess.run([binary, "check-config"], env=clean, capture_output=True, text=True,
                          timeout=30)


# --------------------------------------------------------------------------- YAML, names

def test_every_yaml_file_parses():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert COMPOSE in files and len(files) >= 8
    for p in files:
        docs = load_yaml_docs(p)
        assert docs, f"{p} holds no document"
        for d in docs:
            assert isinstance(d, dict), f"{p}: a document is not a mapping"


def test_service_var_list_is_sane():
    names = service_vars()
    # If svc_config.c changes its helpers the regex must follow; a short list would make
    # every other check here vacuous.
    assert {"SUPPRESS_LISTEN", "REDIS_URL", "SUPPRESS_THREADS", "CIO_RATE_LIMIT",
            "SUPPRESS_LOG_LEVEL", "INTERCOM_CLIENT_SECRET"} <= names
    assert len(readme_table_vars()) >= 15


def test_every_deploy_variable_is_read_by_the_service():
    known = service_vars()
    used = {}
    for name in configmap()["data"]:
        used[name] = "k8s/configmap.yaml"
    for name in secret_data():
        used[name] = "k8s/secret.yaml"
    for e in container().get("env", []):
        used[e["name"]] = "k8s/deployment.yaml env"
    for name, svc in compose()["services"].items():
        for var in compose_env(svc):
            used[var] = f"compose.yaml services.{name}.environment"
    active, commented = parse_env_file(ENV_EXAMPLE)
    for name in set(active) | commented:
        used[name] = "suppressd.env.example"
    unknown = {n: where for n, where in used.items() if n not in known}
    # haproxy/redis services in compose carry no environment; everything here is suppressd's.
    assert not unknown, f"variables the service never reads: {unknown}"


def test_readme_configuration_table_is_covered_by_configmap_or_secret():
    covered = set(configmap()["data"]) | set(secret_data())
    missing = readme_table_vars() - covered - set(K8S_OMITTED)
    assert not missing, f"README variables missing from the ConfigMap/Secret: {missing}"
    assert set(K8S_OMITTED) <= service_vars()
    # ...and the omitted ones are where K8S_OMITTED says they are.
    env = {e["name"]: e for e in container().get("env", [])}
    ref = env["SUPPRESS_THREADS"]["valueFrom"]["resourceFieldRef"]
    assert ref["resource"] == "limits.cpu"
    assert ref.get("containerName", container()["name"]) == container()["name"]
    assert str(ref.get("divisor", "1")) == "1"


def test_secrets_live_only_in_the_secret_and_hold_placeholders():
    sec = secret_data()
    assert SECRET_VARS <= set(sec), f"Secret lacks {SECRET_VARS - set(sec)}"
    assert not SECRET_VARS & set(configmap()["data"]), "a secret variable is in the ConfigMap"
    for name, value in k8s_one("Secret").get("stringData", {}).items():
        assert "REPLACE_ME" in value, f"{name} in secret.yaml is not a marked placeholder"
    assert not k8s_one("Secret").get("data"), "secret.yaml must hold placeholders only"
    # The env example ships no secret values at all.
    active, _ = parse_env_file(ENV_EXAMPLE)
    for name in SECRET_VARS - {"REDIS_URL"}:
        assert name in active, f"{name} missing from suppressd.env.example"
        assert active[name] == "", f"{name} has a value in suppressd.env.example"
    # compose's own environment carries no credentials (Redis there has no password).
    env = compose_env(compose()["services"]["suppressd"])
    assert not (SECRET_VARS - {"REDIS_URL"}) & set(env)
    assert "@" not in str(env.get("REDIS_URL", ""))
    # The real env file is git-ignored.
    assert "suppressd.env" in (DEPLOY / ".gitignore").read_text().split()


def test_k8s_config_is_accepted_by_the_binary():
    env = dict(configmap()["data"])
    env.update(k8s_one("Secret")["stringData"])
    env["SUPPRESS_THREADS"] = str(math.ceil(cpu(container()["resources"]["limits"]["cpu"])))
    r = check_config(env)
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout


def test_compose_config_is_accepted_by_the_binary():
    active, _ = parse_env_file(ENV_EXAMPLE)
    env = dict(active)
    env.update(compose_env(compose()["services"]["suppressd"]))  # environment wins
    r = check_config(env)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- Kubernetes

def cpu(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def test_deployment_probes_ports_and_shutdown():
    c = container()
    port = container_port()
    assert port["containerPort"] == 8080
    listen = configmap()["data"]["SUPPRESS_LISTEN"]
    assert int(listen.rsplit(":", 1)[1]) == port["containerPort"]

    ready = c["readinessProbe"]["httpGet"]
    live = c["livenessProbe"]["httpGet"]
    assert ready["path"] == "/readyz"
    assert live["path"] == "/healthz"
    assert resolve_port(ready["port"]) == port["containerPort"]
    assert resolve_port(live["port"]) == port["containerPort"]

    spec = deployment()["spec"]["template"]["spec"]
    grace = spec["terminationGracePeriodSeconds"]
    assert grace >= EXIT_WITHIN_S
    cmd = c["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[0] == "sleep" and len(cmd) == 2
    pre_stop = int(cmd[1])
    assert 1 <= pre_stop <= 10
    # The grace period includes preStop: the drain must still fit after it.
    assert grace >= pre_stop + EXIT_WITHIN_S, (grace, pre_stop)


def test_deployment_shape_and_security():
    d = deployment()
    spec = d["spec"]
    assert spec["replicas"] == 3
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    c = container()
    res = c["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res[kind]), kind
    assert cpu(res["requests"]["cpu"]) <= cpu(res["limits"]["cpu"])
    pod_sc = spec["template"]["spec"].get("securityContext", {})
    sc = c["securityContext"]
    assert pod_sc.get("runAsNonRoot") or sc.get("runAsNonRoot")
    assert pod_sc.get("runAsUser", sc.get("runAsUser", 0)) != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert "ALL" in sc["capabilities"]["drop"]
    pod = spec["template"]["spec"]
    assert pod.get("topologySpreadConstraints") or \
        pod.get("affinity", {}).get("podAntiAffinity")
    for t in pod.get("topologySpreadConstraints", []):
        assert t["labelSelector"]["matchLabels"].items() <= labels.items()
    # envFrom names the ConfigMap and Secret defined here.
    refs = {(k, v["name"]) for e in c["envFrom"] for k, v in e.items()}
    assert ("configMapRef", configmap()["metadata"]["name"]) in refs
    assert ("secretRef", k8s_one("Secret")["metadata"]["name"]) in refs


def test_service_hpa_pdb_target_the_deployment():
    d = deployment()
    labels = d["spec"]["template"]["metadata"]["labels"]

    svc = k8s_one("Service")
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert svc["spec"]["selector"].items() <= labels.items()
    (p,) = svc["spec"]["ports"]
    assert p["port"] == 80
    assert resolve_port(p["targetPort"]) == 8080

    hpa = k8s_one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", d["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["maxReplicas"] == 12
    (m,) = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert m["resource"]["name"] == "cpu"
    assert 60 <= m["resource"]["target"]["averageUtilization"] <= 80
    assert hpa["spec"]["minReplicas"] <= d["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]

    pdb = k8s_one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("minAvailable") == 2 or pdb["spec"].get("maxUnavailable") == 1


def test_kustomization_lists_every_manifest():
    (k,) = load_yaml_docs(K8S / "kustomization.yaml")
    listed = set(k["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    names = {i["name"] for i in k.get("images", [])}
    assert container()["image"].split(":")[0] in names


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds():
    r = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(r.stdout) if d}
    assert {"ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
            "PodDisruptionBudget"} <= kinds


# --------------------------------------------------------------------------- Dockerfile

def test_dockerfile_stages():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build[0] == "debian:bookworm"
    assert runtime[0] == "debian:bookworm-slim"

    # Build stage: the deps.sh -dev packages, then `make bin/suppressd`.
    deps = (ROOT / "tests" / "tools" / "deps.sh").read_text()
    for pkg in BUILD_PKGS:
        assert re.search(rf"(?<![\w.-]){re.escape(pkg)}(?![\w.-])", deps), \
            f"{pkg} is not in deps.sh"
    assert BUILD_PKGS <= apt_packages(build)
    assert any(re.search(r"\bmake\b[^&;]*\bbin/suppressd\b", r) for r in instrs(build, "RUN"))
    assert re.search(r"^bin/suppressd:", (ROOT / "Makefile").read_text(), re.M)

    # Runtime stage.
    pkgs = apt_packages(runtime)
    assert RUNTIME_PKGS <= pkgs
    assert not {p for p in pkgs if p.endswith("-dev")} and "build-essential" not in pkgs
    (user,) = instrs(runtime, "USER")
    assert user.split(":")[0] not in ("root", "0", "")
    (hc,) = instrs(runtime, "HEALTHCHECK")
    assert "/healthz" in hc and "8080" in hc
    if "curl" in hc:
        assert "curl" in pkgs
    assert instrs(runtime, "EXPOSE") == ["8080"]
    assert "SUPPRESS_LISTEN=0.0.0.0:8080" in " ".join(instrs(runtime, "ENV"))
    assert instrs(runtime, "STOPSIGNAL") == ["SIGTERM"]

    # The binary the runtime copies is the one `make bin/suppressd` writes in the build
    # stage's WORKDIR, and the entrypoint runs it.
    (workdir,) = instrs(build, "WORKDIR")
    copies = [c for c in instrs(runtime, "COPY") if c.startswith("--from=")]
    assert len(copies) == 1
    src, dst = copies[0].split()[1:]
    assert copies[0].split()[0] in (f"--from={build[1]}", "--from=0")
    assert src == f"{workdir.rstrip('/')}/bin/suppressd"
    (entry,) = instrs(runtime, "ENTRYPOINT")
    assert dst in entry


def build_copy_sources():
    build = dockerfile_stages()[0]
    srcs = []
    for c in instrs(build, "COPY"):
        parts = [p for p in c.split() if not p.startswith("--")]
        srcs += parts[:-1]
    return srcs


def test_build_context_is_only_the_sources():
    srcs = build_copy_sources()
    assert {s.rstrip("/") for s in srcs} == {"Makefile", "svc", "state", "api"}
    for s in srcs:
        assert (ROOT / s).exists(), s
    # The allow-list next to the Dockerfile keeps exactly those in the context.
    ignore = [ln.strip() for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*"
    assert {i.lstrip("!").rstrip("/") for i in ignore[1:]} == {s.rstrip("/") for s in srcs}


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("pkg-config") is None,
                    reason="no build tools")
def test_build_stage_builds_from_the_copied_paths_only():
    """What the build stage does, on this host: only the COPYed paths, then the make target."""
    with tempfile.TemporaryDirectory() as tmp:
        for s in build_copy_sources():
            src = ROOT / s
            if src.is_dir():
                shutil.copytree(src, pathlib.Path(tmp) / s.rstrip("/"))
            else:
                shutil.copy2(src, pathlib.Path(tmp) / s)
        r = subprocess.run(["make", "-j2", "bin/suppressd"], cwd=tmp, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        r = subprocess.run([str(pathlib.Path(tmp) / "bin" / "suppressd"), "--version"],
                           capture_output=True, text=True, timeout=30, env={})
        assert r.returncode == 0 and r.stdout.startswith("suppressd ")


@pytest.mark.skipif(shutil.which("readelf") is None or shutil.which("dpkg") is None,
                    reason="readelf/dpkg not available")
def test_runtime_packages_provide_every_linked_library():
    binary = ROOT / "bin" / "suppressd"
    if not binary.is_file():
        pytest.skip("bin/suppressd not built")
    dyn = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    assert needed
    runtime_pkgs = apt_packages(dockerfile_stages()[-1])
    for so in needed:
        r = subprocess.run(["dpkg", "-S", f"*/{so}"], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"dpkg does not know {so}")
        owners = {line.split(":")[0] for line in r.stdout.splitlines()}
        # libc6 is in every Debian image; everything else must be installed explicitly.
        assert owners & (runtime_pkgs | {"libc6"}), f"{so} ({owners}) not installed at run time"


# --------------------------------------------------------------------------- compose, haproxy

def test_compose_topology():
    c = compose()
    services = c["services"]
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    cmd = redis["command"]
    cmd = " ".join(cmd) if isinstance(cmd, list) else cmd
    assert re.search(r"--appendonly\s+yes", cmd)
    assert re.search(r"--appendfsync\s+everysec", cmd)
    assert any(str(v).split(":")[1] == "/data" for v in redis.get("volumes", []))

    app = [s for s in services.values() if s.get("image", "").startswith("suppressd")
           or "build" in s]
    replicas = sum(s.get("deploy", {}).get("replicas", 1) for s in app)
    assert replicas == 3
    for s in app:
        assert s["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE.parent / s["build"]["context"]).resolve() == ROOT
        assert EXIT_WITHIN_S <= seconds(s["stop_grace_period"]) <= 60
        env = compose_env(s)
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert env["SUPPRESS_LISTEN"].endswith(":8080")
        assert "redis" in s["depends_on"]
        files = s["env_file"] if isinstance(s["env_file"], list) else [s["env_file"]]
        for f in files:
            name = f["path"] if isinstance(f, dict) else f
            assert (DEPLOY / (name + ".example")).is_file(), name

    lb = services["lb"]
    assert lb["image"].startswith("haproxy:2.8")
    assert any(str(p).split(":")[-2:] == ["8080", "8080"] or str(p) == "8080:8080"
               for p in lb["ports"])
    mounts = [str(v) for v in lb["volumes"]]
    assert any(v.startswith("./haproxy.cfg:") for v in mounts)


def test_haproxy_checks_readyz_and_balances_round_robin():
    cfg = HAPROXY.read_text()
    lines = [ln.split("#", 1)[0].strip() for ln in cfg.splitlines()]
    assert "option httpchk" in lines or any(ln.startswith("option httpchk ") for ln in lines)
    assert any("/readyz" in ln and ("http-check" in ln or "httpchk" in ln) for ln in lines)
    assert "balance roundrobin" in lines
    assert any(re.match(r"bind\s+(\S*:)?8080$", ln) for ln in lines)
    servers = [ln for ln in lines if ln.startswith(("server ", "server-template "))]
    assert servers and all(":8080" in s for s in servers)
    assert any(ln.startswith("default-server") and " check" in ln for ln in lines) or \
        all(" check" in s for s in servers)
    # the slots cover the compose replicas
    for s in servers:
        m = re.match(r"server-template\s+\S+\s+(\d+)", s)
        if m:
            assert int(m.group(1)) >= 3


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_config_is_valid():
    r = subprocess.run(["haproxy", "-c", "-f", str(HAPROXY)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------- README

def test_deploy_readme_commands_match_the_files():
    text = (DEPLOY / "README.md").read_text()
    assert "docker build -f deploy/Dockerfile" in text
    assert "docker compose -f deploy/compose.yaml" in text
    assert "kubectl apply -k deploy/k8s" in text
    assert "cp deploy/suppressd.env.example deploy/suppressd.env" in text
    # Sizing points at the benchmark rather than quoting figures.
    assert "bench/RESULTS.md" in text and "make bench" in text
    assert re.search(r"^bench:", (ROOT / "Makefile").read_text(), re.M)
    for topic in ("Sentinel", "Cluster", "appendfsync always", "TLS"):
        assert topic in text, topic
    # Every deploy file the README names exists.
    for name in re.findall(r"`((?:k8s/)?[\w.-]+\.(?:yaml|cfg|example|dockerignore))`", text):
        assert (DEPLOY / name).exists() or (K8S / name).exists(), name
