"""Static checks for everything under deploy/ (stdlib + PyYAML; no Docker or cluster needed).

    python deploy/check.py          # exit 0: all good; exit 1: every problem listed

- every *.yaml / *.yml parses (duplicate keys are an error: YAML keeps the last one silently);
- compose: build contexts and Dockerfiles exist, named volumes are declared, bind-mounted paths
  exist, depends_on names real services, each cdrflow service runs `serve NAME` on its contract
  port with a healthcheck on that port and waits for `migrate`;
- Kubernetes: every Deployment/StatefulSet container probes /healthz (liveness) and /readyz
  (readiness) on a port it declares, runs non-root with a read-only root filesystem and a /tmp
  volume, has resources, and disables service links; consumers have at most one replica per
  partition; Services select an existing workload; kustomization.yaml lists every manifest but
  the secret example;
- Prometheus: every rule expression uses only metric names the code registers (rate() and
  increase() only on counters and histogram series), every alert has a severity and a summary,
  the scrape config covers every service; `promtool check rules` and `promtool test rules`
  (deploy/prometheus/tests/) pass; the PrometheusRule for Kubernetes carries the same groups
  (`python deploy/check.py --write` regenerates it);
- Grafana: every dashboard query names only metrics the code registers;
- compose.yaml validates against the compose-spec JSON schema (vendored by check-jsonschema);
- the kustomization, rendered in Python (resources, namespace, configMapGenerator with content
  hashes, images), validates with kubernetes-validate --strict (core kinds; operator kinds are
  checked by apiVersion).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# The contract (docs/architecture.md): service -> port.
SERVICES: dict[str, int] = {
    "ingest": 8001,
    "parser": 8002,
    "billing": 8003,
    "stats": 8004,
    "recordings": 8005,
}


# Metric names alert rules and dashboards may use, with their type: read from the code (every
# service module registers its families in prometheus_client's default registry at import).
# Histograms are listed by base name; their _bucket, _sum and _count series are allowed.
def code_metrics() -> dict[str, str]:
    from prometheus_client import REGISTRY

    import cdrflow.platform  # noqa: F401  (imports every service, hence every metric)

    found = {"up": "gauge", "scrape_duration_seconds": "gauge"}  # Prometheus' own per target
    for family in REGISTRY.collect():
        if family.type == "counter":
            found[f"{family.name}_total"] = "counter"
        else:
            found[family.name] = family.type
    return found


KNOWN_METRICS: dict[str, str] = code_metrics()

# Partitions per topic (kafka-init in compose, optional/strimzi-topics.yaml): a consumer group
# cannot use more members than that.
PARTITIONS = 6
CONSUMERS = {"parser", "billing", "stats", "recordings"}

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
K8S = DEPLOY / "k8s"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}

problems: list[str] = []


def problem(path: Path, message: str) -> None:
    problems.append(f"{path.relative_to(ROOT)}: {message}")


# --------------------------------------------------------------------------- YAML loading


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys in one mapping (merge keys `<<` excepted)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_all() -> dict[Path, list[Any]]:
    docs: dict[Path, list[Any]] = {}
    for path in sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]):
        if "tests" in path.relative_to(DEPLOY).parts:
            continue  # promtool test files
        try:
            with path.open(encoding="utf-8") as fh:
                docs[path] = [d for d in yaml.load_all(fh, Loader=StrictLoader) if d is not None]
        except yaml.YAMLError as exc:
            problem(path, f"not valid YAML: {exc}")
    return docs


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def has_interpolation(value: str) -> bool:
    return "${" in value or value.startswith("$")


# --------------------------------------------------------------------------- compose


def check_compose(path: Path, doc: dict[str, Any]) -> int:
    services: dict[str, Any] = doc.get("services") or {}
    declared_volumes = set((doc.get("volumes") or {}).keys())
    if not services:
        problem(path, "no services")
        return 0

    for name, svc in services.items():
        where = f"service {name!r}"
        build = svc.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            ctx = (path.parent / context).resolve()
            if not ctx.is_dir():
                problem(path, f"{where}: build context {context!r} does not exist ({ctx})")
            elif not (ctx / dockerfile).is_file():
                problem(path, f"{where}: Dockerfile {dockerfile!r} not found in {ctx}")
        if build is None and not svc.get("image"):
            problem(path, f"{where}: neither build nor image")

        for vol in as_list(svc.get("volumes")):
            if isinstance(vol, dict):
                source, kind = vol.get("source"), vol.get("type", "volume")
            else:
                parts = str(vol).split(":")
                source = parts[0] if len(parts) > 1 else None
                kind = "bind" if source and source.startswith((".", "/", "~")) else "volume"
            if not source or has_interpolation(str(source)):
                continue
            if kind == "bind":
                if str(source).startswith((".", "..")) and not (path.parent / source).exists():
                    problem(path, f"{where}: bind-mounted path {source!r} does not exist")
            elif source not in declared_volumes:
                problem(path, f"{where}: volume {source!r} is not declared under top-level volumes")

        depends = svc.get("depends_on") or {}
        for dep, spec in (
            depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)
        ):
            if dep not in services:
                problem(path, f"{where}: depends_on unknown service {dep!r}")
            condition = (spec or {}).get("condition", "service_started")
            if condition not in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }:
                problem(path, f"{where}: depends_on {dep!r} has unknown condition {condition!r}")
            if condition == "service_healthy" and dep in services:
                hc = services[dep].get("healthcheck") or {}
                if hc.get("disable") or ("test" not in hc and services[dep].get("build") is None):
                    problem(
                        path, f"{where}: waits for {dep!r} to be healthy, which has no healthcheck"
                    )

    check_compose_cdrflow(path, services)
    return len(services)


def check_compose_cdrflow(path: Path, services: dict[str, Any]) -> None:
    migrate = [n for n, s in services.items() if as_list(s.get("command"))[:1] == ["migrate"]]
    if not migrate:
        problem(path, "no one-shot service runs `cdrflow migrate`")
    for name, port in SERVICES.items():
        svc = services.get(name)
        if svc is None:
            problem(path, f"cdrflow service {name!r} is missing")
            continue
        where = f"service {name!r}"
        command = [str(c) for c in as_list(svc.get("command"))]
        expected = ["serve", name, "--host", "0.0.0.0", "--port", str(port)]
        if command != expected:
            problem(path, f"{where}: command {command} should be {expected}")
        test = " ".join(str(t) for t in as_list((svc.get("healthcheck") or {}).get("test")))
        if f":{port}/healthz" not in test:
            problem(path, f"{where}: healthcheck should request :{port}/healthz (got {test!r})")
        targets = {str(p).rsplit(":", 1)[-1].split("/")[0] for p in as_list(svc.get("ports"))}
        if svc.get("ports") and str(port) not in targets:
            problem(path, f"{where}: publishes {sorted(targets)} but listens on {port}")
        depends = svc.get("depends_on") or {}
        for m in migrate:
            cond = (depends.get(m) or {}).get("condition") if isinstance(depends, dict) else None
            if cond != "service_completed_successfully":
                problem(
                    path, f"{where}: should depend on {m!r} with service_completed_successfully"
                )
        if svc.get("restart") != "unless-stopped":
            problem(path, f"{where}: restart should be unless-stopped")


# --------------------------------------------------------------------------- Kubernetes


def probe_path(probe: Any) -> tuple[str | None, Any]:
    get = (probe or {}).get("httpGet") or {}
    return get.get("path"), get.get("port")


def pod_template(doc: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = (doc.get("spec") or {}).get("template") or {}
    return template


def check_workload(path: Path, doc: dict[str, Any]) -> None:
    kind, name = doc["kind"], doc.get("metadata", {}).get("name", "?")
    where = f"{kind} {name}"
    template = pod_template(doc)
    pod = template.get("spec") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    if pod.get("enableServiceLinks") is not False:
        problem(
            path,
            f"{where}: set enableServiceLinks: false (Service env vars such as INGEST_PORT "
            "collide with the services' settings prefixes)",
        )
    pod_sc = pod.get("securityContext") or {}
    volumes = {v.get("name") for v in pod.get("volumes") or []}
    volumes |= {
        (t.get("metadata") or {}).get("name")
        for t in (doc.get("spec") or {}).get("volumeClaimTemplates") or []
    }

    containers = pod.get("containers") or []
    if not containers:
        problem(path, f"{where}: no containers")
    for c in containers:
        cwhere = f"{where} container {c.get('name')}"
        ports = c.get("ports") or []
        by_name = {p.get("name"): p.get("containerPort") for p in ports}
        numbers = {p.get("containerPort") for p in ports}

        for probe_key, expected in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            got, port = probe_path(c.get(probe_key))
            if got != expected:
                problem(
                    path, f"{cwhere}: {probe_key} must be an httpGet on {expected} (got {got!r})"
                )
            elif port not in by_name and port not in numbers:
                problem(
                    path, f"{cwhere}: {probe_key} port {port!r} is not a declared container port"
                )

        args = [str(a) for a in c.get("args") or []]
        if args[:1] == ["serve"] and len(args) > 1:
            service = args[1]
            if service not in SERVICES:
                problem(path, f"{cwhere}: serves unknown service {service!r}")
            else:
                port = SERVICES[service]
                if "--port" not in args or args[args.index("--port") + 1] != str(port):
                    problem(path, f"{cwhere}: should run with --port {port}")
                if port not in numbers:
                    problem(path, f"{cwhere}: should declare containerPort {port}")
                replicas = (doc.get("spec") or {}).get("replicas", 1)
                if service in CONSUMERS and replicas > PARTITIONS:
                    problem(
                        path, f"{where}: {replicas} replicas, more than {PARTITIONS} partitions"
                    )
                if annotations.get("prometheus.io/scrape") != "true" or annotations.get(
                    "prometheus.io/port"
                ) != str(port):
                    problem(path, f"{where}: needs prometheus.io/scrape and /port '{port}'")

        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            problem(path, f"{cwhere}: readOnlyRootFilesystem should be true")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            problem(path, f"{cwhere}: runAsNonRoot should be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problem(path, f"{cwhere}: allowPrivilegeEscalation should be false")
        mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts") or []}
        if "/tmp" not in mounts:
            problem(path, f"{cwhere}: needs a writable /tmp volume (read-only root filesystem)")
        for mount_path, volume in mounts.items():
            if volume not in volumes:
                problem(path, f"{cwhere}: mounts unknown volume {volume!r} at {mount_path}")
        resources = c.get("resources") or {}
        if not resources.get("requests") or not resources.get("limits"):
            problem(path, f"{cwhere}: needs resources.requests and resources.limits")


def check_k8s(docs: dict[Path, list[Any]]) -> int:
    manifests = [
        (p, d)
        for p, ds in docs.items()
        if p.is_relative_to(K8S)
        for d in ds
        if isinstance(d, dict) and "kind" in d and "apiVersion" in d
    ]
    workloads = [(p, d) for p, d in manifests if d["kind"] in WORKLOAD_KINDS]
    for p, d in workloads:
        check_workload(p, d)
    served = {
        str(c["args"][1])
        for _, d in workloads
        for c in pod_template(d).get("spec", {}).get("containers") or []
        if (c.get("args") or [])[:1] == ["serve"] and len(c["args"]) > 1
    }
    for name in SERVICES.keys() - served:
        problem(K8S, f"no Deployment/StatefulSet serves {name!r}")

    for p, d in manifests:
        if d["kind"] != "Service":
            continue
        sname = d["metadata"]["name"]
        selector = (d.get("spec") or {}).get("selector") or {}
        pods = [
            pod_template(w)
            for _, w in workloads
            if selector.items() <= (pod_template(w).get("metadata", {}).get("labels") or {}).items()
        ]
        if not pods:
            problem(p, f"Service {sname}: selector {selector} matches no workload")
            continue
        port_names = {
            port.get("name")
            for t in pods
            for c in t.get("spec", {}).get("containers") or []
            for port in c.get("ports") or []
        }
        for port in d["spec"].get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str) and target not in port_names:
                problem(p, f"Service {sname}: targetPort {target!r} is no container's port")
        if sname in SERVICES:
            numbers = {port.get("port") for port in d["spec"].get("ports") or []}
            if SERVICES[sname] not in numbers:
                problem(p, f"Service {sname}: should expose port {SERVICES[sname]}")

    kustomization = K8S / "kustomization.yaml"
    if not kustomization.is_file():
        problem(K8S, "kustomization.yaml is missing")
    else:
        resources = [str(r) for r in (docs.get(kustomization) or [{}])[0].get("resources") or []]
        for r in resources:
            if not (K8S / r).exists():
                problem(kustomization, f"resource {r!r} does not exist")
        if "secret.example.yaml" in resources:
            problem(kustomization, "secret.example.yaml must not be applied by default")
        for gen in (docs.get(kustomization) or [{}])[0].get("configMapGenerator") or []:
            for env in gen.get("envs") or []:
                if not (K8S / env).is_file():
                    problem(kustomization, f"configMapGenerator {gen.get('name')}: no {env}")
        unlisted = {"kustomization.yaml", "secret.example.yaml", *resources}
        for f in sorted(K8S.glob("*.yaml")):
            if f.name not in unlisted:
                problem(kustomization, f"{f.name} is not listed in resources")
    return len(workloads)


# --------------------------------------------------------------------------- Prometheus

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(
    r"(?P<dur>(?:\d+(?:ms|[smhdwy]))+)"
    r"|(?P<num>0x[0-9a-fA-F]+|\d*\.?\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)"
)
_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2",
}  # fmt: skip
_COUNTER_FUNCS = re.compile(r"\b(rate|irate|increase|resets)\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")


def strip_promql(expr: str) -> str:
    """The expression without strings, label matchers, ranges and grouping label lists."""
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", expr)
    return _GROUPING.sub(" ", expr)


def metric_names(expr: str) -> Iterator[str]:
    stripped = strip_promql(expr)
    for m in _TOKEN.finditer(stripped):
        name = m.group("ident")
        if not name or name.lower() in _KEYWORDS:
            continue
        if stripped[m.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        yield name


def metric_type(name: str) -> str | None:
    if name in KNOWN_METRICS:
        return KNOWN_METRICS[name]
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and KNOWN_METRICS.get(base) == "histogram":
            return "histogram_series"
    return None


_DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")


def check_rules(path: Path, doc: dict[str, Any]) -> int:
    count = 0
    names: set[str] = set()
    for group in doc.get("groups") or []:
        gname = group.get("name")
        if not gname:
            problem(path, "a rule group has no name")
        for rule in group.get("rules") or []:
            count += 1
            label = rule.get("alert") or rule.get("record")
            where = f"group {gname!r} rule {label!r}"
            if not label:
                problem(path, f"group {gname!r}: a rule has neither alert nor record")
            if label in names and rule.get("alert"):
                problem(path, f"{where}: duplicate alert name")
            names.add(label)
            expr = rule.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problem(path, f"{where}: no expr")
                continue
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                problem(path, f"{where}: unbalanced brackets in expr")
            for name in metric_names(expr):
                if metric_type(name) is None:
                    problem(path, f"{where}: unknown metric {name!r} (no such metric in the code)")
            for func, name in _COUNTER_FUNCS.findall(strip_promql(expr)):
                kind = metric_type(name)
                if kind not in {"counter", "histogram_series", None}:
                    problem(path, f"{where}: {func}() of {name!r}, a {kind}, not a counter")
            if rule.get("alert"):
                if "for" in rule and not _DURATION.match(str(rule["for"])):
                    problem(path, f"{where}: 'for: {rule['for']}' is not a duration")
                severity = (rule.get("labels") or {}).get("severity")
                if severity not in {"critical", "warning", "info"}:
                    problem(path, f"{where}: labels.severity must be critical, warning or info")
                if not (rule.get("annotations") or {}).get("summary"):
                    problem(path, f"{where}: annotations.summary is missing")
    if not count:
        problem(path, "no rules")
    return count


def check_prometheus_config(path: Path, doc: dict[str, Any]) -> None:
    for rf in doc.get("rule_files") or []:
        if not any(path.parent.glob(rf)):
            problem(path, f"rule file {rf!r} not found next to it")
    targets = {
        str(t)
        for job in doc.get("scrape_configs") or []
        for sc in job.get("static_configs") or []
        for t in sc.get("targets") or []
    }
    for name, port in SERVICES.items():
        if f"{name}:{port}" not in targets:
            problem(path, f"no scrape target {name}:{port}")


# --------------------------------------------------------------------------- promtool


PROMETHEUS = DEPLOY / "prometheus"
PROMETHEUS_RULE = DEPLOY / "k8s-operators" / "prometheusrule.yaml"


def check_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        problem(
            PROMETHEUS, "promtool not found: install Debian's prometheus package (make promtool)"
        )
        return
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "tests/alerts_test.yml"]):
        run = subprocess.run(
            [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            problem(PROMETHEUS, f"promtool {' '.join(args)} failed:\n{run.stdout}{run.stderr}")


def prometheus_rule() -> dict[str, Any]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "cdrflow",
            "labels": {"app.kubernetes.io/name": "cdrflow", "app.kubernetes.io/part-of": "cdrflow"},
        },
        "spec": {"groups": groups},
    }


def check_prometheusrule(*, write: bool) -> None:
    rule = prometheus_rule()
    if write:
        header = (
            "# Generated from deploy/prometheus/alerts.yml by `python deploy/check.py --write`;\n"
            "# deploy/check.py fails when the two differ. Do not edit by hand.\n"
        )
        PROMETHEUS_RULE.write_text(header + yaml.safe_dump(rule, sort_keys=False, width=100))
    current = yaml.safe_load(PROMETHEUS_RULE.read_text()) if PROMETHEUS_RULE.exists() else None
    if current != rule:
        problem(PROMETHEUS_RULE, "differs from alerts.yml: run `python deploy/check.py --write`")


# --------------------------------------------------------------------------- Grafana

DASHBOARDS = DEPLOY / "grafana" / "dashboards"


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every target, rows' nested panels included."""
    panels = list(dashboard.get("panels") or [])
    while panels:
        panel = panels.pop()
        panels += panel.get("panels") or []
        for target in panel.get("targets") or []:
            if target.get("expr"):
                yield str(panel.get("title")), str(target["expr"])


def check_grafana() -> int:
    count = 0
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for title, expr in dashboard_queries(dashboard):
            count += 1
            for name in metric_names(expr.replace("$__rate_interval", "5m")):
                if metric_type(name) is None and not name.startswith("$"):
                    problem(path, f"panel {title!r}: unknown metric {name!r}")
    if DASHBOARDS.exists() and not count:
        problem(DASHBOARDS, "no dashboard queries found")
    return count


# --------------------------------------------------------------------------- compose schema


def check_compose_schema() -> None:
    import jsonschema
    from check_jsonschema.builtin_schemas import vendor

    schema = json.loads((resources.files(vendor) / "compose-spec.json").read_text())
    compose = DEPLOY / "compose" / "compose.yaml"
    doc = yaml.safe_load(compose.read_text())
    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in err.path)
        problem(compose, f"compose-spec schema: {where}: {err.message}")


# --------------------------------------------------------------------------- kustomize, rendered


def _content_hash(data: dict[str, str]) -> str:
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def _dotenv(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def render_kustomization(directory: Path) -> list[dict[str, Any]]:
    """What ``kubectl kustomize`` renders for the features these kustomizations use (resources,
    namespace, configMapGenerator with content-hash names and rewritten references, images)."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for res in k.get("resources") or []:
        target = (directory / res).resolve()
        if target.is_dir():
            objects += render_kustomization(target)
        else:
            objects += [d for d in yaml.safe_load_all(target.read_text()) if isinstance(d, dict)]
    renames: dict[str, str] = {}
    for gen in k.get("configMapGenerator") or []:
        data: dict[str, str] = {}
        for env in gen.get("envs") or []:
            data.update(_dotenv(directory / env))
        name = f"{gen['name']}-{_content_hash(data)}"
        renames[gen["name"]] = name
        objects.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
        )
    images = {i["name"]: i for i in k.get("images") or []}
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if k.get("namespace") and obj.get("kind") not in CLUSTER_SCOPED:
            meta["namespace"] = k["namespace"]
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            for src in c.get("envFrom") or []:
                ref = src.get("configMapRef")
                if ref and ref.get("name") in renames:
                    ref["name"] = renames[ref["name"]]
            image = images.get(str(c.get("image")).split(":")[0])
            if image:
                c["image"] = (
                    f"{image.get('newName', image['name'])}:{image.get('newTag', 'latest')}"
                )
    return objects


OPERATOR_APIS = {
    "ScaledObject": "keda.sh/v1alpha1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "Kafka": "kafka.strimzi.io/v1",
    "KafkaNodePool": "kafka.strimzi.io/v1",
    "KafkaTopic": "kafka.strimzi.io/v1",
    "KafkaUser": "kafka.strimzi.io/v1",
}


def check_k8s_schemas() -> int:
    import kubernetes_validate

    count = 0
    rendered = [
        ("k8s", render_kustomization(K8S)),
        ("k8s-operators", render_kustomization(DEPLOY / "k8s-operators")),
    ]
    extra = [
        d
        for f in sorted((K8S / "optional").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d
    ]
    rendered.append(("k8s/optional", extra))
    for where, objects in rendered:
        for obj in objects:
            kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name")
            if kind in OPERATOR_APIS:
                if obj.get("apiVersion") != OPERATOR_APIS[kind]:
                    problem(K8S, f"{where}: {kind} {name} should be {OPERATOR_APIS[kind]}")
                continue
            try:
                kubernetes_validate.validate(obj, "1.33.0", strict=True)
            except kubernetes_validate.ValidationError as exc:
                problem(
                    K8S, f"{where}: {kind} {name}: {exc.message} at {'/'.join(map(str, exc.path))}"
                )
            count += 1
    # Every generated ConfigMap a pod reads exists, and nothing still names the old shared ones.
    for where, objects in rendered[:2]:
        names = {
            (o.get("metadata") or {}).get("name") for o in objects if o.get("kind") == "ConfigMap"
        }
        for obj in objects:
            pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
            for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
                for src in c.get("envFrom") or []:
                    ref = (src.get("configMapRef") or {}).get("name")
                    if ref and ref not in names:
                        problem(
                            K8S,
                            f"{where}: {obj['kind']} {obj['metadata']['name']} reads "
                            f"ConfigMap {ref}, which is not rendered",
                        )
    return count


# --------------------------------------------------------------------------- main


def main() -> int:
    docs = load_all()
    compose_services = rules = 0
    used_metrics: set[str] = set()
    for path, ds in docs.items():
        for doc in ds:
            if not isinstance(doc, dict):
                continue
            if path.parent.name == "compose" and "services" in doc:
                compose_services += check_compose(path, doc)
            elif "groups" in doc and path.parent.name == "prometheus" and path.name == "alerts.yml":
                rules += check_rules(path, doc)
                for group in doc.get("groups") or []:
                    for rule in group.get("rules") or []:
                        used_metrics |= set(metric_names(str(rule.get("expr", ""))))
            elif "scrape_configs" in doc:
                check_prometheus_config(path, doc)
    if not compose_services:
        problem(DEPLOY / "compose", "no compose file with services found")
    if not rules:
        problem(DEPLOY / "prometheus", "no alert rules found")
    workloads = check_k8s(docs)

    check_promtool()
    check_prometheusrule(write="--write" in sys.argv)
    check_grafana()
    check_compose_schema()
    validated = check_k8s_schemas()

    if problems:
        print(f"deploy check: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(
        f"deploy check: ok ({len(docs)} YAML files, {compose_services} compose services, "
        f"{workloads} Kubernetes workloads, {rules} alert rules, {validated} rendered "
        "Kubernetes objects validated)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
