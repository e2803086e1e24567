"""What of an error may leave the process: ``/readyz`` is open to anyone who reaches it, and a
database error's text carries the statement and its parameters (callers' numbers)."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

_MAX = 200


def public_error(exc: BaseException) -> str:
    """The error's type (and the driver's, for a database error) and, where no data can be in
    it, its first line; never SQL, parameters or a value."""
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        inner = f" ({type(orig).__name__})" if orig is not None else ""
        return f"{type(exc).__name__}{inner}; see the log"
    return public_text(f"{type(exc).__name__}: {exc}")


def public_text(text: str) -> str:
    """The first line, cut before any ``[SQL:`` or ``[parameters:`` part, at most 200 characters."""
    for marker in ("\n", "[SQL", "[parameters"):
        text = text.split(marker, 1)[0]
    text = text.strip()
    return text if len(text) <= _MAX else text[: _MAX - 1] + "…"
