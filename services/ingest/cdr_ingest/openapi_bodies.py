"""The request bodies of the ingest routes, for the OpenAPI document: the routes read the raw
body themselves (any encoding a FreeSWITCH posts), so FastAPI cannot infer them. The examples are
real FreeSWITCH CDRs (``examples/``, copied from ``tests/fixtures/freeswitch``)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from cdrmodel.call_events import CallEvent

_EXAMPLES = resources.files("cdr_ingest").joinpath("examples")
XML_EXAMPLE = _EXAMPLES.joinpath("incoming-call.xml").read_text()
JSON_EXAMPLE: dict[str, Any] = json.loads(_EXAMPLES.joinpath("answered.json").read_text())

_TEXT = {"type": "string"}
_FORM = {
    "type": "object",
    "properties": {"cdr": {"type": "string", "description": "the XML or JSON CDR"}},
    "required": ["cdr"],
}

CDR_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One CDR as mod_xml_cdr or mod_json_cdr posts it: the document itself, or "
        "in the form field `cdr` (also `application/x-www-form-base64-encoded` and "
        "`application/x-www-form-plaintext`, as mod_xml_cdr's `encode` setting chooses)",
        "content": {
            "text/xml": {"schema": _TEXT, "example": XML_EXAMPLE},
            "application/xml": {"schema": _TEXT, "example": XML_EXAMPLE},
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": JSON_EXAMPLE,
            },
            "application/x-www-form-urlencoded": {
                "schema": _FORM,
                "example": {"cdr": XML_EXAMPLE},
            },
            "multipart/form-data": {"schema": _FORM},
        },
    }
}

_EVENT: dict[str, Any] = {
    "type": "object",
    "description": CallEvent.__doc__,
    "properties": {
        "id": {"type": "string", "description": "the record's own id"},
        "type": {"type": "string", "enum": ["start", "end"]},
        "timestamp": {"type": "string", "format": "date-time", "description": "with a timezone"},
        "call_id": {"type": "string"},
        "source": {
            "type": "string",
            "pattern": r"^\d{10,11}$",
            "description": "caller number: area code + 8 or 9 digits (needed on a start)",
        },
        "destination": {
            "type": "string",
            "pattern": r"^\d{10,11}$",
            "description": "callee number: area code + 8 or 9 digits (needed on a start)",
        },
    },
    "required": ["id", "type", "timestamp", "call_id"],
}
_EVENT_EXAMPLES = [
    {
        "id": "evt-1001",
        "type": "start",
        "timestamp": "2024-03-05T10:00:00Z",
        "call_id": "c-42",
        "source": "11999998888",
        "destination": "1133334444",
    },
    {"id": "evt-1002", "type": "end", "timestamp": "2024-03-05T10:02:30Z", "call_id": "c-42"},
]

EVENTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One call start or end record, or a list of them; each is judged alone",
        "content": {
            "application/json": {
                "schema": {"anyOf": [_EVENT, {"type": "array", "items": _EVENT}]},
                "example": _EVENT_EXAMPLES,
            }
        },
    }
}
