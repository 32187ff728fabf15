#!/usr/bin/env python3
"""Checks that the deployment examples agree with each other and with callout's config.

    python3 deploy/check.py [DEPLOY_DIR] [--callout BIN]

The manifests repeat facts that only the config states (ports, paths, file names); nothing
else notices when the two drift apart until a pod fails its probes. One line per check,
"ok: ..." or "FAIL: ...", and exit status 1 on any failure. Needs PyYAML and
kubernetes-validate (deploy/requirements.txt); the repository root is DEPLOY_DIR's parent.
"""

import argparse
import ipaddress
import posixpath
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

# Native sidecars (restartPolicy on an init container) are on by default from 1.29.
KUBERNETES_VERSIONS = ["1.29.0", "latest"]
READY = "/.callout/ready"
HEALTH = "/.callout/health"
METRICS = "/.callout/metrics"


class Report:
    def __init__(self):
        self.failures = 0

    def ok(self, message):
        print(f"ok: {message}")

    def fail(self, message):
        self.failures += 1
        print(f"FAIL: {message}")

    def note(self, message):
        print(f"note: {message}")

    def check(self, condition, good, bad):
        """Reports `good` or `bad` and returns `condition`, so callers can stop early."""
        (self.ok if condition else self.fail)(good if condition else bad)
        return condition


def main():
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deploy_dir", nargs="?", type=Path, default=here)
    parser.add_argument("--callout", type=Path, help="binary for `callout check` "
                        "(default: REPO/target/debug/callout, skipped when missing)")
    args = parser.parse_args()
    deploy = args.deploy_dir.resolve()
    root = deploy.parent
    binary = args.callout or root / "target" / "debug" / "callout"

    report = Report()
    image = check_image_files(report, root)
    k8s_docs = load_yaml(report, deploy, sorted((deploy / "kubernetes").glob("*.yaml")))
    compose_docs = load_yaml(report, deploy, [deploy / "compose.yaml"])
    validate_schemas(report, deploy, k8s_docs)
    configs = check_kubernetes(report, [doc for _, doc in k8s_docs], image)
    compose_configs = check_compose(report, deploy, root, compose_docs, image)
    for name, text in configs + compose_configs:
        run_callout_check(report, binary, name, text)

    if report.failures:
        print(f"{report.failures} check(s) failed")
        return 1
    print("all checks passed")
    return 0


# === the image ===


def check_image_files(report, root):
    """Checks the Dockerfile and .dockerignore; returns what the image fixes for the others."""
    image = {"config": "/etc/callout/callout.toml", "user": None}
    dockerfile = root / "Dockerfile"
    if not report.check(dockerfile.is_file(), "Dockerfile exists", f"no {dockerfile}"):
        return image
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]

    env = [re.search(r"\bCALLOUT_CONFIG[= ](\S+)", line) for line in lines
           if line.upper().startswith("ENV ")]
    env = [m.group(1).strip("\"'") for m in env if m]
    if report.check(bool(env), f"Dockerfile sets CALLOUT_CONFIG={env[-1] if env else ''}",
                    "Dockerfile sets no CALLOUT_CONFIG, so plain `callout health` finds no config"):
        image["config"] = env[-1]

    health = [line for line in lines if line.upper().startswith("HEALTHCHECK ")]
    command = None
    if health:
        m = re.search(r"\bCMD\s+(\[.*\])\s*$", health[-1])
        command = yaml.safe_load(m.group(1)) if m else None
    report.check(isinstance(command, list) and is_callout_health(command),
                 "Dockerfile HEALTHCHECK runs `callout health` in exec form",
                 "Dockerfile HEALTHCHECK must be exec form running `callout health` "
                 "(distroless has no shell)")

    dockerignore = root / ".dockerignore"
    if not report.check(dockerignore.is_file(), ".dockerignore exists",
                        ".dockerignore is missing: the build context would hold target/"):
        return image
    patterns = parse_dockerignore(dockerignore.read_text())
    sources = []
    for line in lines:
        if line.upper().startswith(("COPY ", "ADD ")) and "--from=" not in line:
            words = line.split()[1:]
            words = [w for w in words if not w.startswith("--")]
            sources += words[:-1]
    dropped = []
    for source in sources:
        path = root / source
        files = [path] if not path.is_dir() else [p for p in path.rglob("*") if p.is_file()]
        files = files or [path]
        dropped += [str(f.relative_to(root)) for f in files
                    if dockerignored(patterns, str(f.relative_to(root)))]
    report.check(not dropped,
                 f".dockerignore keeps what the Dockerfile copies ({', '.join(sources)})",
                 f".dockerignore drops files the Dockerfile copies: {', '.join(dropped[:5])}")
    heavy = [p for p in ["target/release/callout", ".git/HEAD", "tests/interop/package.json",
                         "fuzz/Cargo.toml", "bench/run.sh"] if not dockerignored(patterns, p)]
    report.check(not heavy, ".dockerignore leaves target/, .git, tests/, fuzz/ and bench/ out",
                 f".dockerignore lets these into the build context: {', '.join(heavy)}")
    return image


def parse_dockerignore(text):
    """Docker's rules: last matching pattern wins; a pattern also matches everything under a
    folder it matches; `**` spans folders, `*` and `?` do not."""
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif line.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif line[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif line[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(line[i]), i + 1
        patterns.append((re.compile(f"^{regex}$"), negate))
    return patterns


def dockerignored(patterns, path):
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for regex, negate in patterns:
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return excluded


# === YAML and schemas ===


def load_yaml(report, deploy, files):
    docs = []
    for path in files:
        name = path.relative_to(deploy.parent)
        try:
            found = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            report.fail(f"{name}: {e}")
            continue
        report.ok(f"{name}: {len(found)} YAML document(s)")
        docs += [(name, d) for d in found]
    return docs


def validate_schemas(report, deploy, docs):
    try:
        import kubernetes_validate
    except ImportError:
        report.fail("kubernetes-validate is not installed (pip install -r deploy/requirements.txt)")
        return
    versions = [kubernetes_validate.latest_version() if v == "latest" else v
                for v in KUBERNETES_VERSIONS]
    for name, doc in docs:
        label = f"{name}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                report.fail(f"{label} does not match the Kubernetes {version} schema: "
                            f"{where}: {e.message}")
            except (kubernetes_validate.SchemaNotFoundError, KeyError) as e:
                report.fail(f"{label}: no schema ({getattr(e, 'message', e)})")
            else:
                report.ok(f"{label} matches the Kubernetes {version} schema (strict)")


# === Kubernetes ===


def check_kubernetes(report, docs, image):
    """Returns [(name, callout.toml text)] for `callout check`."""
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind"), {})[(doc.get("metadata") or {}).get("name")] = doc
    deployments = list(by_kind.get("Deployment", {}).values())
    if not report.check(bool(deployments), "a Deployment is defined",
                        "no Deployment in deploy/kubernetes"):
        return []
    configs = []
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = ((deployment.get("spec") or {}).get("template") or {})
        text = check_pod(report, f"Deployment {name}", pod, by_kind, image)
        if text is not None:
            configs.append((f"Deployment {name}'s callout.toml", text))
    return configs


def check_pod(report, label, template, by_kind, image):
    spec = template.get("spec") or {}
    inits = spec.get("initContainers") or []
    plain = spec.get("containers") or []
    callout = [c for c in inits if is_callout(c)]
    if [c for c in plain if is_callout(c)]:
        report.fail(f"{label}: callout is a plain container; make it an init container with "
                    "restartPolicy: Always so it starts before the app and stops after it")
        return None
    if not report.check(bool(callout), f"{label}: callout is an init container",
                        f"{label}: no callout container"):
        return None
    c = callout[0]
    label = f"{label}, container {c['name']}"
    if not report.check(c.get("restartPolicy") == "Always",
                        f"{label}: restartPolicy Always (a native sidecar)",
                        f"{label}: an init container without restartPolicy: Always runs to "
                        "completion before the app starts; callout never completes"):
        return None
    report.check(any(not is_callout(x) for x in plain), f"{label}: an app container runs beside it",
                 f"{label}: no app container")
    check_container_image(report, label, c)

    mounts = {m["mountPath"].rstrip("/") or "/": m for m in c.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    config_path = config_path_of(c, image["config"])
    text = read_mounted_config(report, label, config_path, mounts, volumes, by_kind)
    if text is None:
        return None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        report.fail(f"{label}: {config_path} is not valid TOML: {e}")
        return None
    report.ok(f"{label}: {config_path} parses as TOML")

    server = config.get("server") or {}
    ports = {p.get("name"): p["containerPort"]
             for p in c.get("ports") or [] if "containerPort" in p}
    listen = parse_address(server.get("listen", "127.0.0.1:7575"))
    admin = parse_address(server["admin_listen"]) if "admin_listen" in server else None
    if listen:
        report.check(listen[1] in ports.values(),
                     f"{label}: containerPort {listen[1]} is [server].listen's port",
                     f"{label}: [server].listen port {listen[1]} is not among containerPorts "
                     f"{sorted(ports.values())}")
        report.check(is_loopback(listen[0]) or "callers" in config,
                     f"{label}: the proxy listens on loopback ({listen[0]})",
                     f"{label}: the proxy listens on {listen[0]} without [callers]: anyone who "
                     "reaches the pod IP could use any principal")
    if admin:
        report.check(admin[1] in ports.values(),
                     f"{label}: containerPort {admin[1]} is [server].admin_listen's port",
                     f"{label}: admin_listen port {admin[1]} is not among containerPorts "
                     f"{sorted(ports.values())}")
        report.check(not is_loopback(admin[0]),
                     f"{label}: admin_listen ({admin[0]}) is reachable on the pod IP",
                     f"{label}: admin_listen on {admin[0]} cannot be reached by the kubelet "
                     "or Prometheus")
    check_probes(report, label, c, ports, admin)
    check_annotations(report, label, template, admin)
    check_secret_files(report, label, config, config_path, c, spec, mounts, volumes, by_kind)
    check_env_secrets(report, label, config, c)
    check_hardening(report, label, c, spec)
    check_grace(report, label, spec, server)
    return text


def check_container_image(report, label, c):
    image = c.get("image", "")
    repo = re.split(r"[@:]", image.rsplit("/", 1)[-1])[0]
    report.check(repo == "callout", f"{label}: image {image}",
                 f"{label}: image {image!r} is not a callout image")
    if image == "callout:latest":
        report.check(c.get("imagePullPolicy") in ("IfNotPresent", "Never"),
                     f"{label}: the local image is not pulled (imagePullPolicy "
                     f"{c.get('imagePullPolicy')})",
                     f"{label}: callout:latest is a local build; without imagePullPolicy "
                     "IfNotPresent the kubelet tries to pull it and fails")


def config_path_of(c, default):
    words = (c.get("command") or []) + (c.get("args") or [])
    for i, word in enumerate(words):
        if word == "--config" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--config="):
            return word.split("=", 1)[1]
    for env in c.get("env") or []:
        if env.get("name") == "CALLOUT_CONFIG" and "value" in env:
            return env["value"]
    return default


def mount_for(path, mounts):
    """The volumeMount that holds `path` (the deepest one, as the kernel resolves it)."""
    best = None
    for mount_path, mount in mounts.items():
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
            if best is None or len(mount_path) > len(best[0]):
                best = (mount_path, mount)
    return best


def key_for(relative, source):
    """The ConfigMap or Secret key that a volume presents at `relative`, or None."""
    items = source.get("items")
    if items:
        return next((i["key"] for i in items if i.get("path") == relative), None)
    return relative if "/" not in relative else None


def read_mounted_config(report, label, config_path, mounts, volumes, by_kind):
    found = mount_for(config_path, mounts)
    if not report.check(found is not None, f"{label}: {config_path} is under a volumeMount",
                        f"{label}: the config path {config_path} (CALLOUT_CONFIG or --config) "
                        "is under no volumeMount"):
        return None
    mount_path, mount = found
    source = (volumes.get(mount["name"]) or {}).get("configMap")
    if not report.check(source is not None, f"{label}: {mount_path} is a ConfigMap volume",
                        f"{label}: the volume mounted at {mount_path} is not a ConfigMap"):
        return None
    if not report.check("subPath" not in mount, f"{label}: {mount_path} is mounted whole",
                        f"{label}: {mount_path} uses subPath, which never sees ConfigMap updates"):
        return None
    relative = posixpath.relpath(config_path, mount_path)
    key = key_for(relative, source)
    configmap = (by_kind.get("ConfigMap") or {}).get(source.get("name"))
    data = (configmap or {}).get("data") or {}
    if not report.check(key in data,
                        f"{label}: {config_path} is key {key} of ConfigMap {source.get('name')}",
                        f"{label}: {config_path} would be {relative} in ConfigMap "
                        f"{source.get('name')}, which has no such key (keys: {sorted(data)})"):
        return None
    return data[key]


def check_probes(report, label, c, ports, admin):
    wanted = {"readinessProbe": READY, "livenessProbe": HEALTH, "startupProbe": READY}
    for kind, path in wanted.items():
        probe = c.get(kind)
        if probe is None:
            if kind != "startupProbe":
                report.fail(f"{label}: no {kind}")
            else:
                report.note(f"{label}: no startupProbe, so the app may start before "
                            "callout is ready")
            continue
        if "exec" in probe:
            report.check(is_callout_health(probe["exec"].get("command") or []),
                         f"{label}: {kind} runs `callout health`",
                         f"{label}: {kind} exec command is not `callout health`")
            continue
        get = probe.get("httpGet")
        if not report.check(get is not None, f"{label}: {kind} is httpGet",
                            f"{label}: {kind} is neither httpGet nor `callout health`"):
            continue
        port = get.get("port")
        number = ports.get(port) if isinstance(port, str) else port
        if admin is None:
            report.fail(f"{label}: {kind} uses httpGet, but without admin_listen nothing "
                        "listens on the pod IP; set admin_listen or use `callout health`")
        else:
            report.check(number == admin[1], f"{label}: {kind} port {port} is admin_listen's",
                         f"{label}: {kind} port {port} ({number}) is not admin_listen's "
                         f"port {admin[1]}")
        report.check(get.get("path") == path, f"{label}: {kind} path {path}",
                     f"{label}: {kind} path {get.get('path')!r} should be {path}")


def check_annotations(report, label, template, admin):
    notes = (template.get("metadata") or {}).get("annotations") or {}
    if notes.get("prometheus.io/scrape") != "true":
        report.note(f"{label}: no prometheus.io/scrape annotation")
        return
    port = notes.get("prometheus.io/port")
    report.check(admin is not None and port == str(admin[1]),
                 f"{label}: prometheus.io/port {port} is admin_listen's",
                 f"{label}: prometheus.io/port {port!r} is not admin_listen's port "
                 f"({admin[1] if admin else 'no admin_listen'})")
    report.check(notes.get("prometheus.io/path") == METRICS,
                 f"{label}: prometheus.io/path {METRICS}",
                 f"{label}: prometheus.io/path should be {METRICS}")


def secret_refs(value, kind):
    """Every `{ kind = "..." }` secret reference in the config."""
    if isinstance(value, dict):
        if set(value) == {kind} and isinstance(value[kind], str):
            yield value[kind]
        else:
            for v in value.values():
                yield from secret_refs(v, kind)
    elif isinstance(value, list):
        for v in value:
            yield from secret_refs(v, kind)


def check_secret_files(report, label, config, config_path, c, spec, mounts, volumes, by_kind):
    security = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
    uid = security.get("runAsUser")
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    for path in secret_refs(config, "file"):
        path = posixpath.normpath(posixpath.join(posixpath.dirname(config_path), path))
        found = mount_for(path, mounts)
        if not report.check(found is not None,
                            f"{label}: secret file {path} is under a volumeMount",
                            f"{label}: secret file {path} is under no volumeMount of {c['name']}"):
            continue
        mount_path, mount = found
        source = (volumes.get(mount["name"]) or {}).get("secret")
        if not report.check(source is not None,
                            f"{label}: {mount_path} is Secret volume {mount['name']}",
                            f"{label}: secret file {path} is under {mount_path}, which is not "
                            "a Secret volume"):
            continue
        report.check(mount.get("readOnly") is True, f"{label}: {mount_path} is mounted readOnly",
                     f"{label}: mount {mount_path} should be readOnly")
        report.check("subPath" not in mount, f"{label}: {mount_path} is mounted whole",
                     f"{label}: {mount_path} uses subPath, which never sees a rotated Secret")
        relative = posixpath.relpath(path, mount_path)
        key = key_for(relative, source)
        secret = (by_kind.get("Secret") or {}).get(source.get("secretName"))
        keys = set((secret or {}).get("data") or {}) | set((secret or {}).get("stringData") or {})
        report.check(key in keys,
                     f"{label}: {path} is key {key} of Secret {source.get('secretName')}",
                     f"{label}: {path} would be {relative} in Secret {source.get('secretName')}, "
                     f"which has no such key (keys: {sorted(keys)})")
        item = next((i for i in source.get("items") or [] if i.get("key") == key), {})
        mode = item.get("mode", source.get("defaultMode", 0o644))
        report.check(mode & 0o077 == 0, f"{label}: {path} has mode {mode:04o}",
                     f"{label}: {path} has mode {mode:04o}, readable by group or others; "
                     "use defaultMode: 0400")
        if uid not in (None, 0):
            report.check(fs_group is not None,
                         f"{label}: uid {uid} reads the root-owned {path} through fsGroup "
                         f"{fs_group} (the kubelet makes it {mode | 0o040:04o})",
                         f"{label}: {path} is owned by root with mode {mode:04o}, so uid {uid} "
                         "cannot read it; set the pod's securityContext.fsGroup")


def check_env_secrets(report, label, config, c):
    names = {e.get("name") for e in c.get("env") or []}
    for var in secret_refs(config, "env"):
        report.check(var in names, f"{label}: env {var} is set",
                     f"{label}: the config reads env {var}, which the container does not set")


def check_hardening(report, label, c, spec):
    pod = spec.get("securityContext") or {}
    own = c.get("securityContext") or {}
    merged = {**pod, **own}
    report.check(merged.get("runAsNonRoot") is True and merged.get("runAsUser") != 0,
                 f"{label}: runs as non-root", f"{label}: runAsNonRoot is not set")
    report.check(own.get("readOnlyRootFilesystem") is True, f"{label}: read-only root filesystem",
                 f"{label}: readOnlyRootFilesystem is not true")
    report.check(own.get("allowPrivilegeEscalation") is False, f"{label}: no privilege escalation",
                 f"{label}: allowPrivilegeEscalation is not false")
    drop = ((own.get("capabilities") or {}).get("drop")) or []
    report.check("ALL" in drop, f"{label}: drops all capabilities",
                 f"{label}: capabilities.drop lacks ALL")
    resources = c.get("resources") or {}
    report.check(bool((resources.get("limits") or {}).get("memory"))
                 and bool(resources.get("requests")),
                 f"{label}: has resource requests and a memory limit",
                 f"{label}: needs resource requests and a memory limit")


def check_grace(report, label, spec, server):
    grace = spec.get("terminationGracePeriodSeconds", 30)
    drain = parse_duration(server.get("shutdown_grace", "10s"))
    report.check(drain is not None and grace > drain,
                 f"{label}: terminationGracePeriodSeconds {grace} exceeds shutdown_grace",
                 f"{label}: terminationGracePeriodSeconds {grace} leaves callout's "
                 f"shutdown_grace {server.get('shutdown_grace')} no time after the app exits")


# === compose ===


def check_compose(report, deploy, root, docs, image):
    configs = []
    for name, doc in docs:
        services = (doc or {}).get("services") or {}
        found = {n: s for n, s in services.items() if is_callout_service(s)}
        if not report.check(bool(found), f"{name}: a callout service is defined",
                            f"{name}: no service builds or runs callout"):
            continue
        for service_name, service in found.items():
            text = check_service(report, f"{name} service {service_name}", deploy, root,
                                 service, image)
            if text is not None:
                configs.append((f"{name} service {service_name}'s config", text))
    return configs


def is_callout_service(service):
    image = str(service.get("image", ""))
    return "build" in service or re.split(r"[@:]", image.rsplit("/", 1)[-1])[0] == "callout"


def check_service(report, label, deploy, root, service, image):
    build = service.get("build")
    if build is not None:
        build = {"context": build} if isinstance(build, str) else build
        context = (deploy / build.get("context", ".")).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        report.check(dockerfile.is_file(), f"{label}: builds {dockerfile.relative_to(root)}",
                     f"{label}: build context has no {build.get('dockerfile', 'Dockerfile')}")

    test = (service.get("healthcheck") or {}).get("test")
    report.check(isinstance(test, list) and test[:1] == ["CMD"] and is_callout_health(test[1:]),
                 f"{label}: healthcheck runs `callout health` in exec form",
                 f"{label}: healthcheck must be [\"CMD\", \"/usr/local/bin/callout\", \"health\"] "
                 "(the image has no shell)")

    published = [parse_compose_port(p) for p in service.get("ports") or []]
    for host_ip, port, target in published:
        report.check(host_ip is not None and is_loopback(host_ip),
                     f"{label}: port {target} is published on {host_ip}:{port}",
                     f"{label}: port {target} is published on {host_ip or 'every interface'}; "
                     "publish it as \"127.0.0.1:HOST:CONTAINER\"")
    if not published:
        report.note(f"{label}: publishes no port")

    words = service.get("command") or []
    words = words.split() if isinstance(words, str) else words
    env = compose_env(service.get("environment"))
    config_path = config_path_of({"args": words, "env": [
        {"name": k, "value": v} for k, v in env.items() if v is not None]}, image["config"])
    source = None
    for volume in service.get("volumes") or []:
        src, target = parse_compose_volume(volume)
        if src is not None and target == config_path:
            source = (deploy / src).resolve()
        elif src is not None and config_path.startswith(target.rstrip("/") + "/"):
            source = (deploy / src / posixpath.relpath(config_path, target)).resolve()
    if not report.check(source is not None, f"{label}: {config_path} is bind-mounted",
                        f"{label}: nothing is mounted at the config path {config_path}"):
        return None
    inside = source.is_relative_to(root) and source.is_file()
    if not report.check(inside, f"{label}: mounts {source.relative_to(root) if inside else source}",
                        f"{label}: the mounted config {source} is not a file in the repository"):
        return None
    text = source.read_text()
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        report.fail(f"{label}: {source.name} is not valid TOML: {e}")
        return None
    report.ok(f"{label}: {source.name} parses as TOML")

    server = config.get("server") or {}
    listen = parse_address(server.get("listen", "127.0.0.1:7575"))
    if listen:
        targets = [t for _, _, t in published]
        report.check(listen[1] in targets, f"{label}: publishes [server].listen's port {listen[1]}",
                     f"{label}: [server].listen port {listen[1]} is not published ({targets})")
        report.check(not is_loopback(listen[0]),
                     f"{label}: listens on {listen[0]}, which a published port reaches",
                     f"{label}: listens on {listen[0]}, the container's own loopback, which a "
                     "published port never reaches")
    for var in secret_refs(config, "env"):
        report.check(var in env, f"{label}: env {var} is passed in",
                     f"{label}: the config reads env {var}, which the service does not set")
    return text


def parse_compose_port(entry):
    """(host_ip or None, published, target) of a short or long port entry."""
    if isinstance(entry, dict):
        return entry.get("host_ip"), str(entry.get("published", "")), int(entry["target"])
    text = str(entry).split("/")[0]
    host_ip = None
    if text.startswith("["):
        host_ip, _, text = text[1:].partition("]:")
    parts = text.split(":")
    if host_ip is None and len(parts) == 3:
        host_ip = parts.pop(0)
    published = parts[0] if len(parts) == 2 else ""
    try:
        return host_ip, published, int(parts[-1])
    except ValueError:
        return host_ip, published, -1


def parse_compose_volume(entry):
    """(source or None, target) of a bind mount, short or long syntax."""
    if isinstance(entry, dict):
        return (entry.get("source") if entry.get("type") == "bind" else None), entry.get("target")
    parts = str(entry).split(":")
    if len(parts) >= 2 and parts[0].startswith((".", "/", "~")):
        return parts[0], parts[1]
    return None, parts[1] if len(parts) >= 2 else parts[0]


def compose_env(environment):
    if isinstance(environment, dict):
        return {k: (None if v is None else str(v)) for k, v in environment.items()}
    out = {}
    for item in environment or []:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


# === callout itself ===


def run_callout_check(report, binary, name, text):
    if not binary.is_file():
        report.note(f"{binary} not found, `callout check` of {name} skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "callout.toml"
        path.write_text(text)
        path.chmod(0o600)
        try:
            run = subprocess.run([str(binary), "check", "--no-secrets", "--config", str(path)],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            report.fail(f"`callout check --no-secrets` of {name}: {e}")
            return
    output = (run.stdout + run.stderr).strip()
    if run.returncode == 0:
        report.ok(f"`callout check --no-secrets` accepts {name}")
    else:
        report.fail(f"`callout check --no-secrets` of {name} exited {run.returncode}:")
        for line in output.splitlines():
            print(f"    {line}")


# === small parsers ===


def is_callout(container):
    image = container.get("image", "")
    return container.get("name") == "callout" or \
        re.split(r"[@:]", image.rsplit("/", 1)[-1])[0] == "callout"


def is_callout_health(command):
    return len(command) >= 2 and str(command[0]).rsplit("/", 1)[-1] == "callout" \
        and command[1] == "health"


def parse_address(text):
    """(host, port) of "HOST:PORT" or "[V6]:PORT"; None for a unix: listener."""
    if text.startswith("unix:"):
        return None
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_duration(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", str(text))
    if not m:
        return None
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


if __name__ == "__main__":
    sys.exit(main())
