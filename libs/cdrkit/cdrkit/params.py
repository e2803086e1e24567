"""Query-string strictness: a parameter a route does not declare is a 400, never ignored.

A misspelt filter (``?sorce=hipath``) that is silently ignored answers with *every* record, which
an operator takes for the filtered answer. Add ``Depends(known_query_only)`` to a router (or a
route) and any query parameter that none of its route's parameters or dependencies declare
answers ``400 {"error": "unknown_parameter", ...}`` naming it and the accepted ones.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant

from cdrmodel.errors import InvalidInput


class UnknownParameter(InvalidInput):
    code = "unknown_parameter"


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def known_query_only(request: Request) -> None:
    """Refuse (400) a query parameter the matched route does not declare."""
    route = request.scope.get("route")
    dependant: Dependant | None = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = _query_names(dependant)  # a few names: cheaper than a cache keyed safely
    unknown = sorted(set(request.query_params.keys()) - known)
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise UnknownParameter(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}; this endpoint accepts: {accepted}"
        )
