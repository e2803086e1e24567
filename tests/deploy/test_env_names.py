"""Every variable name in compose, Kubernetes, .env.example and the docs is one a service reads
(cdrflow.configdoc, from the settings classes), and the deployments set the ones a deployed
service needs. INGEST_BEARER_TOKENS (read by nothing) once left ingest open without a word."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from cdrflow.configdoc import RETIRED, RUNNER_VARIABLES, names_for, services, variables

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / ".env.example"
K8S = ROOT / "deploy" / "k8s"

# Standard variables of the AWS SDK (botocore) the S3 clients read.
AWS = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
}
COMMON_REQUIRED = {"CDRFLOW_DATABASE_URL", "CDRFLOW_BUS_URL", "CDRFLOW_AUTO_MIGRATE"}
# What a deployed service cannot do without (the embedded defaults are SQLite, memory:// and
# open APIs). The claim-check store must be shared (S3) between ingest and parser.
REQUIRED: dict[str, set[str]] = {
    "migrate": {"CDRFLOW_DATABASE_URL"},
    "ingest": COMMON_REQUIRED
    | {"CDRFLOW_API_TOKENS", "INGEST_BASIC_AUTH", "CDRFLOW_OBJECT_STORE_URL"},
    "parser": COMMON_REQUIRED | {"CDRFLOW_API_TOKENS", "CDRFLOW_OBJECT_STORE_URL"},
    "billing": COMMON_REQUIRED | {"CDRFLOW_API_TOKENS"},
    "stats": COMMON_REQUIRED | {"CDRFLOW_API_TOKENS"},
    "recordings": COMMON_REQUIRED | {"CDRFLOW_API_TOKENS", "RECORDINGS_S3_BUCKET"},
    # The programs beside the services: where they deliver, with what, and where they keep
    # what must survive a restart (the edge queue, the Pexip checkpoint).
    "edge": {"EDGE_INGEST_URL", "EDGE_TOKEN", "EDGE_DATA_DIR"},
    "pexip": {"PEXIP_URL", "PEXIP_INGEST_URL", "PEXIP_INGEST_TOKEN", "PEXIP_DATA_DIR"},
}
PREFIXES = ["CDRFLOW", *(n.upper() for n in services()), "EDGE", "PEXIP"]
# Names the docs and deploy files use that no program reads: a benchmark's scale and the compose
# variable naming the host file mounted as the Pexip password secret.
NOT_SETTINGS = {"EDGE_BENCH_SCALE", "PEXIP_PASSWORD_FILE_ON_HOST"}
SERVICE_PREFIX = re.compile(rf"\b(?:{'|'.join(PREFIXES)})_[A-Z][A-Z0-9_]*\b")
# Names Kubernetes injects for Services (enableServiceLinks), named in comments as the reason
# the manifests turn them off.
SERVICE_LINK = re.compile(r"^(?:INGEST|PARSER|BILLING|STATS|RECORDINGS)_(?:PORT|SERVICE_HOST)")
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?+]([^}$]*))?")


def _service_of(command: list[str]) -> str | None:
    if command[:1] == ["serve"] and len(command) > 1:
        return command[1]
    if command[:1] in (["edge"], ["pexip"]):
        return command[0]
    return "migrate" if command[:1] == ["migrate"] else None


def _env_keys(env: Any) -> set[str]:
    if isinstance(env, dict):
        return set(env)
    return {str(item).split("=", 1)[0] for item in env or []}


def _check(where: str, service: str, names: set[str]) -> list[str]:
    known = (names_for(service) if service != "migrate" else names_for("common")) | AWS
    problems = [f"{where}: {n} is not read by {service}" for n in sorted(names - known)]
    problems += [f"{where}: {n} is retired ({RETIRED[n]})" for n in sorted(names & set(RETIRED))]
    missing = REQUIRED.get(service, COMMON_REQUIRED | {"CDRFLOW_API_TOKENS"}) - names
    problems += [f"{where}: {service} needs {n}" for n in sorted(missing)]
    return problems


def compose_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in (doc.get("services") or {}).items():
        service = _service_of([str(c) for c in svc.get("command") or []])
        if service:
            problems += _check(f"compose {name}", service, _env_keys(svc.get("environment")))
    return problems


def _dotenv(path: Path) -> dict[str, str]:
    """Names in .env.example, commented-out ones included, with their values."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_compose_services_get_only_names_they_read_and_all_they_need() -> None:
    assert compose_problems(yaml.safe_load(COMPOSE.read_text())) == []


def test_env_example_matches_what_compose_interpolates() -> None:
    text = COMPOSE.read_text()
    interpolated: dict[str, set[str]] = {}
    for name, default in INTERPOLATION.findall(text):
        interpolated.setdefault(name, set()).add(default)
    example = _dotenv(ENV_EXAMPLE)
    assert sorted(set(example) - set(interpolated)) == [], ".env.example names compose never uses"
    assert sorted(set(interpolated) - set(example)) == [], "compose variables .env.example misses"
    service_names = {v.name for v in variables()}
    for name, value in example.items():
        if SERVICE_PREFIX.fullmatch(name) and name not in NOT_SETTINGS | {"CDRFLOW_IMAGE"}:
            assert name in service_names, f"{name} looks like a service setting but none reads it"
        defaults = {d for d in interpolated[name] if d and "set " not in d}
        if value and defaults and name in service_names:
            assert value in defaults, f".env.example {name}={value}, compose default {defaults}"


def _k8s_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc:
                yield path, doc


def _dotenv_files() -> dict[str, set[str]]:
    """configMapGenerator / secretGenerator env files next to kustomization.yaml."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out: dict[str, set[str]] = {}
    for gen in [
        *(kustomization.get("configMapGenerator") or []),
        *(kustomization.get("secretGenerator") or []),
    ]:
        keys: set[str] = set()
        for env in gen.get("envs") or []:
            keys |= set(_dotenv(K8S / env))
        for literal in gen.get("literals") or []:
            keys.add(literal.split("=", 1)[0])
        out[gen["name"]] = keys
    return out


def k8s_problems() -> list[str]:
    sources: dict[str, set[str]] = _dotenv_files()
    workloads = []
    for path, doc in _k8s_docs():
        if doc["kind"] in ("ConfigMap", "Secret"):
            sources[doc["metadata"]["name"]] = set(doc.get("data") or {}) | set(
                doc.get("stringData") or {}
            )
        spec = (doc.get("spec") or {}).get("template", {}).get("spec") or (
            (doc.get("spec") or {}).get("jobTemplate", {}).get("spec", {}).get("template", {})
        ).get("spec")
        if spec:
            workloads.append((path, doc, spec))
    problems = []
    for path, _doc, spec in workloads:
        main = [_service_of([str(a) for a in c.get("args") or []]) for c in spec["containers"]]
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            service = _service_of([str(a) for a in c.get("args") or []])
            if not service:
                continue
            # A pod's `cdrflow migrate` init container reads the pod's Secret: judge its names
            # against the pod's service (migrate reads a subset of them).
            pod_service = next((m for m in main if m and m != "migrate"), None)
            if service == "migrate" and pod_service:
                names = set()
                for src in c.get("envFrom") or []:
                    ref = src.get("configMapRef") or src.get("secretRef") or {}
                    names |= sources.get(ref.get("name"), set())
                problems += [
                    f"{path.name} {c['name']}: {n} is not read by {pod_service}"
                    for n in sorted(names - names_for(pod_service) - AWS)
                ]
                if "CDRFLOW_DATABASE_URL" not in names:
                    problems.append(f"{path.name} {c['name']}: migrate needs CDRFLOW_DATABASE_URL")
                continue
            names = {e["name"] for e in c.get("env") or []}
            for src in c.get("envFrom") or []:
                ref = src.get("configMapRef") or src.get("secretRef") or {}
                if ref.get("name") not in sources:
                    problems.append(
                        f"{path.name} {c['name']}: no ConfigMap/Secret {ref.get('name')}"
                    )
                names |= sources.get(ref.get("name"), set())
            problems += _check(f"{path.relative_to(K8S)} {c['name']}", service, names)
    return problems


def test_kubernetes_pods_get_only_names_they_read_and_all_they_need() -> None:
    assert k8s_problems() == []


def test_docs_name_only_variables_something_reads() -> None:
    known = {v.name for v in variables()} | set(RUNNER_VARIABLES) | set(RETIRED) | {"CDRFLOW_IMAGE"}
    known |= {"CDRFLOW_TEST_PG_ADMIN"}  # the test suite's PostgreSQL login (docs/testing)
    known |= NOT_SETTINGS
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "deploy").rglob("*.md")]
    files += [*(ROOT / "deploy").rglob("*.yaml"), *(ROOT / "deploy").rglob("*.yml"), ENV_EXAMPLE]
    unknown = sorted(
        f"{f.relative_to(ROOT)}: {name}"
        for f in files
        for name in set(SERVICE_PREFIX.findall(f.read_text(encoding="utf-8")))
        if name not in known and not SERVICE_LINK.match(name) and not name.endswith("_")
    )
    assert unknown == []


def test_the_checks_catch_a_wrong_name() -> None:
    # The very mistake of issue 14: a token variable ingest does not read.
    doc = yaml.safe_load(COMPOSE.read_text())
    doc["services"]["ingest"]["environment"]["INGEST_BEARER_TOKENS"] = "x"
    del doc["services"]["ingest"]["environment"]["INGEST_BASIC_AUTH"]
    # The agent's baud rate under a name it does not read: the PBX's 19200 would be ignored.
    doc["services"]["edge"]["environment"]["EDGE_BAUDRATE"] = "19200"
    del doc["services"]["pexip"]["environment"]["PEXIP_DATA_DIR"]
    problems = compose_problems(doc)
    assert any("INGEST_BEARER_TOKENS is not read by ingest" in p for p in problems)
    assert any("ingest needs INGEST_BASIC_AUTH" in p for p in problems)
    assert any("EDGE_BAUDRATE is not read by edge" in p for p in problems)
    assert any("pexip needs PEXIP_DATA_DIR" in p for p in problems)
    assert set(services()) == {"ingest", "parser", "billing", "stats", "recordings"} | (
        set(services()) - {"ingest", "parser", "billing", "stats", "recordings"}
    )
