"""docs/architecture.md is the contract: every route a service serves is listed there, and every
endpoint listed there is served (method and path; path parameter names do not matter)."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route

from cdrflow.platform import SERVICES, service_spec
from cdrkit.app import AppState, health_router

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
METHODS = "GET|POST|PUT|PATCH|DELETE|HEAD"
# `GET /v1/cdrs`, `GET|PUT /v1/tariff-assignments/{subscriber}`, `GET /v1/buckets?since=…`
DOCUMENTED = re.compile(rf"`((?:{METHODS})(?:\|(?:{METHODS}))*) (/[^`\s?]*)")


def _key(method: str, path: str) -> tuple[str, str]:
    return method, re.sub(r"\{[^}]*\}", "{}", path)


def documented() -> set[tuple[str, str]]:
    found = set()
    for methods, path in DOCUMENTED.findall(ARCHITECTURE.read_text()):
        for method in methods.split("|"):
            if method != "HEAD":  # HEAD comes with GET; where it is declared, GET is too
                found.add(_key(method, path))
    return found


def served(tmp_path: Path) -> dict[tuple[str, str], str]:
    routers = [("every service", health_router(AppState(), uses_database=True))]
    for name in SERVICES:
        _, spec = service_spec(name, data_dir=tmp_path)
        routers += [(name, router) for router in spec.routers]
    found = {}
    for owner, router in routers:
        for route in router.routes:
            assert isinstance(route, Route), f"{owner}: unexpected route type {route!r}"
            for method in route.methods or ():
                if method != "HEAD":
                    found[_key(method, route.path)] = owner
    return found


def test_every_served_route_is_in_the_architecture(tmp_path: Path) -> None:
    missing = sorted(
        f"{owner}: {m} {p}"
        for (m, p), owner in served(tmp_path).items()
        if (m, p) not in documented()
    )
    assert not missing, f"routes served but not listed in docs/architecture.md: {missing}"


def test_every_endpoint_in_the_architecture_is_served(tmp_path: Path) -> None:
    routes = served(tmp_path)
    missing = sorted(f"{m} {p}" for m, p in documented() if (m, p) not in routes)
    assert not missing, f"docs/architecture.md lists endpoints no service serves: {missing}"


def test_the_check_sees_the_ingest_post() -> None:
    # The parser of the document itself: a listed endpoint is found in its usual forms.
    assert ("POST", "/v1/cdr") in documented()
    assert ("GET", "/v1/recordings/{}/audio") in documented()
