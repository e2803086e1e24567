"""The configuration reference, generated from the settings classes: ``docs/configuration.md``.

    python -m cdrflow.configdoc            # print the page
    python -m cdrflow.configdoc --write    # rewrite docs/configuration.md
    python -m cdrflow.configdoc --check    # exit 1 when the committed page is stale

Every variable a service reads is a field of ``cdrkit.settings.ServiceSettings`` (``CDRFLOW_*``,
every service) or of a service's settings class (``<SERVICE>_*``, ``cdrflow.platform.SERVICES``).
A field's description is the comment block right above it in the class. ``variables()`` is also
what tests/deploy/test_env_names.py checks compose, Kubernetes, ``.env.example`` and the docs
against.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import textwrap
from dataclasses import dataclass, fields, replace
from enum import Enum
from pathlib import Path

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from cdrkit.settings import ServiceSettings

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# Read by the `cdrflow` command itself (not by a service's settings).
RUNNER_VARIABLES: dict[str, tuple[str, str]] = {
    "CDRFLOW_HOST": ("127.0.0.1", "address `cdrflow run` / `cdrflow serve` bind to"),
    "CDRFLOW_PORT": ("8000", "port of `cdrflow run` (a service's own port is its contract port)"),
    "CDRFLOW_MOCK_RATE": ("0", "mock calls per minute `cdrflow run` posts to itself"),
    "CDRFLOW_MOCK_EDGE": ("0", "mock HiPath calls per minute through a real edge agent in `run`"),
    "CDRFLOW_REPLAY_URL": ("http://127.0.0.1:8000", "where `cdrflow replay` posts"),
    "CDRFLOW_REPLAY_TOKEN": ("", "bearer token `cdrflow replay` sends"),
    "CDRFLOW_REPLAY_USER": ("", "user:pass `cdrflow replay` sends (HTTP Basic)"),
}
# Names earlier releases read; a deployment file that still sets one is an error, docs may name
# them only to say so.
RETIRED: dict[str, str] = {
    "INGEST_BEARER_TOKENS": "never read: the variable is INGEST_TOKENS",
    "RECORDINGS_TOKENS": "replaced by CDRFLOW_API_TOKENS (the recordings service refuses it)",
}


@dataclass(frozen=True)
class Variable:
    name: str
    service: str  # "common" or the service name
    type: str
    default: str
    secret: bool
    description: str


def _type_name(annotation: object) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    for noise in ("typing.", "pathlib.", "pydantic.types.", "cdr_stats.settings."):
        text = text.replace(noise, "")
    return text.replace("NoneType", "None")


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default
    if value is None:
        return "unset"
    if value == "":
        return "(empty)"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset | set):
        value = sorted(value)
    if isinstance(value, tuple) and value and hasattr(value[0], "model_dump"):
        return "built-in rules (see the service's docs)"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value) if value else "(empty)"
    return str(value)


def _comments(cls: type) -> dict[str, str]:
    """The comment block right above each field in the class body."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    found: dict[str, str] = {}
    tree = ast.parse(source)
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    previous: tuple[int, str] | None = None  # (end line, description) of the field before
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            block: list[str] = []
            i = node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                block.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            text = " ".join(block)
            # A field right under another (no blank line, no comment of its own) shares the
            # comment of its group.
            if not text and previous and previous[0] == node.lineno - 1:
                text = previous[1]
            found[node.target.id] = text
            previous = (node.end_lineno or node.lineno, text)
        else:
            previous = None
    return found


def _env_name(cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    return f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def _fields(cls: type[BaseSettings], service: str, own_only: bool) -> list[Variable]:
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if (
            isinstance(klass, type)
            and issubclass(klass, BaseSettings)
            and klass is not BaseSettings
        ):
            comments.update(_comments(klass))
    out = []
    for name, field in cls.model_fields.items():
        if own_only and name in ServiceSettings.model_fields:
            continue
        annotation = field.annotation
        secret = "SecretStr" in str(annotation) or annotation is SecretStr
        out.append(
            Variable(
                _env_name(cls, name, field),
                service,
                _type_name(annotation),
                _default(field),
                secret,
                comments.get(name, ""),
            )
        )
    return out


def services() -> dict[str, type[ServiceSettings]]:
    from cdrflow.platform import SERVICES

    return {name: svc.settings for name, svc in SERVICES.items()}


def _with_fallbacks(v: Variable, fallbacks: list[str], whose: str) -> Variable:
    if not fallbacks:
        return v
    names = ", ".join(f"`{f}`" for f in fallbacks)
    return replace(v, description=f"{v.description} ({whose}: {names}, read when this is unset.)")


def edge_variables() -> list[Variable]:
    """``cdrflow edge``, the serial PBX agent (a dataclass, read without pydantic)."""
    from cdr_ingest.edge import settings as edge

    comments = _comments(edge.EdgeSettings)
    out = []
    for f in fields(edge.EdgeSettings):
        name = edge.ENV[f.name]
        text = comments.get(f.name, "")
        default = "unset" if f.default is None else f.default
        if isinstance(default, bool):
            default = "true" if default else "false"
        v = Variable(name, "edge", _type_name(f.type), str(default), name == "EDGE_TOKEN", text)
        bare = [edge._BARE[name]] if name in edge._BARE else []
        out.append(_with_fallbacks(v, bare, "calllogger's name"))
    out.append(
        Variable(
            edge.METRICS_PORT,
            "edge",
            "int | None",
            "unset",
            False,
            "Serve the agent's own Prometheus metrics on this port.",
        )
    )
    return out


def pexip_variables() -> list[Variable]:
    """``cdrflow pexip``, the Pexip Infinity history puller."""
    from cdr_ingest.pexip.settings import METRICS_PORT, PexipSettings

    out = []
    for v, field in zip(
        _fields(PexipSettings, "pexip", own_only=False),
        PexipSettings.model_fields.values(),
        strict=True,
    ):
        alias = field.validation_alias
        rest = [str(c) for c in alias.choices[1:]] if isinstance(alias, AliasChoices) else []
        out.append(_with_fallbacks(v, rest, "pex_data_collector's name"))
    text = "`cdrflow pexip run` serves its Prometheus metrics on this port."
    out.append(Variable(METRICS_PORT, "pexip", "int | None", "unset", False, text))
    return out


# The programs beside the services, with the title of their section.
PROGRAMS = {
    "edge": "`cdrflow edge`: the serial PBX agent (`EDGE_*`, docs/edge.md)",
    "pexip": "`cdrflow pexip`: the Pexip Infinity history puller (`PEXIP_*`, docs/pexip.md)",
}


@functools.cache
def variables() -> tuple[Variable, ...]:
    """Every variable a service reads (the common ones, then each service's own), then those of
    the programs beside them (``edge``, ``pexip``)."""
    out = _fields(ServiceSettings, "common", own_only=False)
    for name, cls in services().items():
        out += _fields(cls, name, own_only=True)
    out += edge_variables()
    out += pexip_variables()
    return tuple(out)


def names_for(service: str) -> set[str]:
    """The variables ``service`` reads (``migrate``: the common ones)."""
    return {v.name for v in variables() if v.service in ("common", service)}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    out = [
        "# Configuration",
        "",
        "<!-- Generated by `python -m cdrflow.configdoc --write` from the settings classes; "
        "tests/deploy/test_configdoc.py fails when this page is stale. Do not edit by hand. -->",
        "",
        "Every service reads its settings from the environment at start-up and refuses to start",
        "with a sentence naming the variable when one is invalid. `CDRFLOW_*` settings are read",
        "by every service; `<SERVICE>_*` ones only by that service. Secrets (marked 🔒) never",
        "appear in logs or error messages. Which file sets what in a deployment: `deploy/`",
        "(docs/deploy.md); a name there that no service reads fails",
        "`tests/deploy/test_env_names.py`.",
        "",
    ]
    groups: dict[str, list[Variable]] = {}
    for v in variables():
        groups.setdefault(v.service, []).append(v)
    for service, items in groups.items():
        title = "Every service (`CDRFLOW_*`)" if service == "common" else f"{service}"
        title = PROGRAMS.get(service, title)
        out += [f"## {title}", "", "| variable | default | type | meaning |", "|---|---|---|---|"]
        for v in items:
            lock = " 🔒" if v.secret else ""
            out.append(
                f"| `{v.name}`{lock} | `{_cell(v.default)}` | `{_cell(v.type)}` | "
                f"{_cell(v.description) or '—'} |"
            )
        out.append("")
    out += [
        "## The `cdrflow` command",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, (default, meaning) in RUNNER_VARIABLES.items():
        out.append(f"| `{name}` | `{default or 'unset'}` | {meaning} |")
    out += [
        "",
        "## Kafka over TLS and SASL",
        "",
        "Options of `CDRFLOW_BUS_URL` (cdrkit/bus/security.py), for example",
        "`kafka://kafka-bootstrap:9093?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-512"
        "&sasl_username=cdrflow-parser&ssl_cafile=/etc/kafka-ca/ca.crt` with the password in",
        "`CDRFLOW_BUS_SASL_PASSWORD` (or `sasl_password_file=/path`):",
        "",
        "| option | values |",
        "|---|---|",
        "| `security_protocol` | `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT`, `SASL_SSL` |",
        "| `ssl_cafile` | PEM file of the CA(s) the brokers' certificates are checked against "
        "(default: the system's) |",
        "| `ssl_certfile`, `ssl_keyfile` | client certificate and key (mutual TLS) |",
        "| `ssl_check_hostname` | `true` (default) / `false` |",
        "| `sasl_mechanism` | `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` |",
        "| `sasl_username` | the Kafka user |",
        "| `sasl_password_file` | a file holding the password (a mounted Secret) |",
        "",
        "A URL with `user:password@` is refused (without repeating it).",
        "",
        "## Names no longer read",
        "",
        "| variable | |",
        "|---|---|",
    ]
    for name, why in RETIRED.items():
        out.append(f"| `{name}` | {why} |")
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    page = render()
    if "--write" in args:
        PAGE.write_text(page, encoding="utf-8")
        return 0
    if "--check" in args:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != page:
            print(f"{PAGE} is stale: run `python -m cdrflow.configdoc --write`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
