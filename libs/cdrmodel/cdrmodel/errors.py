"""One error hierarchy for the platform, mapped to HTTP answers or dead letters only at the edges.

``InvalidInput`` and its subclasses mean "this input will never succeed": a 4xx at an HTTP edge,
a dead letter in a consumer. ``Transient`` means "try again": a consumer pauses and retries, an
HTTP edge answers 503 so the sender retries.
"""

from __future__ import annotations


class CdrflowError(Exception):
    """Base of every error cdrflow raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(CdrflowError):
    """The input is wrong and retrying will not help."""

    code = "invalid_input"
    status = 400


class NotWellFormed(InvalidInput):
    code = "not_well_formed"


class UnsafeDocument(InvalidInput):
    """A document built to attack its reader (DOCTYPE, entity declarations)."""

    code = "unsafe_document"


class MissingField(InvalidInput):
    code = "missing_field"


class UnmappableRecord(InvalidInput):
    """Well-formed, but it cannot become a CDR (no start time, no call id, …)."""

    code = "unmappable"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"
    status = 415


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    status = 413


class Unauthorized(InvalidInput):
    code = "unauthorized"
    status = 401


class Forbidden(InvalidInput):
    """Authenticated, but the token's role is below what the route needs."""

    code = "forbidden"
    status = 403


class NotFound(InvalidInput):
    code = "not_found"
    status = 404


class Transient(CdrflowError):
    """A dependency is unavailable right now; the same operation may succeed later."""

    code = "unavailable"
    status = 503
