"""What a switch posts, decoded: every form mod_xml_cdr and mod_json_cdr send (ARCHITECTURE §5-6).

Pure functions: bytes and headers in, a ``Document`` (the CDR text, its kind and call id) out, or
an ``InvalidInput`` subclass whose code and sentence become the 4xx answer.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from urllib.parse import parse_qsl

from lxml import etree

from cdrkit.xml import parse_xml
from cdrmodel import PayloadKind
from cdrmodel.errors import MissingField, NotWellFormed, UnsupportedMediaType

FORM_URLENCODED = "application/x-www-form-urlencoded"  # mod_xml_cdr encode=true (default)
FORM_BASE64 = "application/x-www-form-base64-encoded"  # encode=base64
FORM_PLAINTEXT = "application/x-www-form-plaintext"  # encode=false: cdr=<raw document>
XML_TYPES = frozenset({"text/xml", "application/xml"})  # encode=textxml
JSON_TYPES = frozenset({"application/json", "text/json"})  # mod_json_cdr
SUPPORTED = sorted({FORM_URLENCODED, FORM_BASE64, FORM_PLAINTEXT, *XML_TYPES, *JSON_TYPES})


@dataclass(frozen=True, slots=True)
class Document:
    text: str
    kind: PayloadKind
    content_type: str  # of the document itself: application/xml or application/json
    call_id: str | None


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def decode_post(body: bytes, content_type: str | None) -> Document:
    mtype = media_type(content_type)
    if not body.strip():
        raise MissingField("the request body is empty; post the CDR document")
    if mtype in XML_TYPES:
        return _xml(body)
    if mtype in JSON_TYPES:
        return _json(body)
    if mtype == FORM_URLENCODED:
        return _sniff(_form_field(body).encode())
    if mtype == FORM_PLAINTEXT:
        if not body.startswith(b"cdr="):
            raise MissingField("the form has no cdr field (expected a body of cdr=<document>)")
        return _sniff(body[4:])
    if mtype == FORM_BASE64:
        value = _form_field(body)
        try:
            raw = base64.b64decode(value.replace(" ", "+"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise NotWellFormed("the cdr field is not valid base64") from exc
        return _sniff(raw)
    raise UnsupportedMediaType(
        f"content type {mtype or '(none)'!r} is not supported; send one of: {', '.join(SUPPORTED)}"
    )


def _form_field(body: bytes) -> str:
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise NotWellFormed("a url-encoded form must be ASCII; the body is not") from exc
    try:
        fields = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except ValueError as exc:
        raise NotWellFormed(f"the form cannot be parsed: {exc}") from exc
    for name, value in fields:
        if name == "cdr":
            if not value.strip():
                raise MissingField("the cdr field is empty")
            return value
    raise MissingField("the form has no cdr field")


def _sniff(raw: bytes) -> Document:
    head = raw.lstrip()[:1]
    if head == b"<":
        return _xml(raw)
    if head in (b"{", b"["):
        return _json(raw)
    raise NotWellFormed("the cdr field holds neither an XML nor a JSON document")


def _xml(raw: bytes) -> Document:
    root = parse_xml(raw)
    if root.tag != "cdr":
        raise NotWellFormed(f"the XML root element is <{root.tag}>, not <cdr>")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotWellFormed("the XML document is not UTF-8") from exc
    return Document(text, PayloadKind.FREESWITCH_XML, "application/xml", _xml_call_id(root))


def _xml_call_id(root: etree._Element) -> str | None:
    # Old (2009-era) documents have no uuid variable; the caller profile always has one.
    uuid = root.findtext("variables/uuid") or root.findtext("callflow/caller_profile/uuid") or ""
    return uuid.strip() or None


def _json(raw: bytes) -> Document:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotWellFormed(f"the JSON document is not well-formed: {exc}") from exc
    if not isinstance(doc, dict):
        raise NotWellFormed("the JSON document must be an object")
    call_id = None
    variables = doc.get("variables")
    if isinstance(variables, dict) and isinstance(variables.get("uuid"), str):
        call_id = variables["uuid"] or None
    return Document(raw.decode("utf-8"), PayloadKind.FREESWITCH_JSON, "application/json", call_id)
