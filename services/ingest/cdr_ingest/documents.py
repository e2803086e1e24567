"""What a switch posts, decoded: every form mod_xml_cdr and mod_json_cdr send (ARCHITECTURE §5-6).

Pure functions: bytes and headers in, a ``Document`` (the CDR text, its kind and call id) out, or
an ``InvalidInput`` subclass whose code and sentence become the 4xx answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from lxml import etree

from cdrkit.xml import check_xml, parse_xml, root_tag
from cdrmodel import PayloadKind
from cdrmodel.errors import MissingField, NotWellFormed, UnsupportedMediaType

FORM_URLENCODED = "application/x-www-form-urlencoded"  # mod_xml_cdr encode=true (default)
FORM_BASE64 = "application/x-www-form-base64-encoded"  # encode=base64
FORM_PLAINTEXT = "application/x-www-form-plaintext"  # encode=false: cdr=<raw document>
XML_TYPES = frozenset({"text/xml", "application/xml"})  # encode=textxml
JSON_TYPES = frozenset({"application/json", "text/json"})  # mod_json_cdr
MULTIPART = "multipart/form-data"  # curl -F cdr=@file, HTML forms, some gateways
SUPPORTED = sorted(
    {FORM_URLENCODED, FORM_BASE64, FORM_PLAINTEXT, MULTIPART, *XML_TYPES, *JSON_TYPES}
)

# A body is bytes, or a zero-copy slice of them (lxml, binascii and str() all read buffers).
Raw = bytes | memoryview


@dataclass(frozen=True, slots=True)
class Document:
    text: str
    kind: PayloadKind
    content_type: str  # of the document itself: application/xml or application/json
    tree: etree._Element | dict[str, Any] | None = None  # the parsed document, when at hand

    def call_id(self) -> str | None:
        """The leg's uuid from the document. Only needed when the post has no ``uuid`` query
        parameter (mod_xml_cdr always sends one), so it is not looked up eagerly."""
        if isinstance(self.tree, dict):
            variables = self.tree.get("variables")
            uuid = variables.get("uuid") if isinstance(variables, dict) else None
            return _call_id(uuid) if isinstance(uuid, str) else None
        tree = self.tree
        if tree is None and self.kind is PayloadKind.FREESWITCH_XML:
            tree = parse_xml(self.text)  # decode_post checked it without building the tree
        if tree is not None:
            # Old (2009-era) documents have no uuid variable; the caller profile always has one.
            found = tree.find("variables/uuid")
            if found is None or not found.text:
                found = tree.find("callflow/caller_profile/uuid")
            return _call_id(found.text) if found is not None and found.text else None
        return None


def _call_id(value: str) -> str | None:
    """A usable call id (it becomes the bus key): printable, of sane length. Anything else (a
    JSON ``\\ud800``, control characters, megabytes) is no id; the parser judges the record."""
    value = value.strip()
    if not value or len(value) > 255 or not value.isprintable():
        return None
    return value


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def decode_post(body: bytes, content_type: str | None) -> Document:
    """The document in a post. Large bodies (5 MB CDRs) are sliced with ``memoryview`` rather
    than copied, so a post holds the body, the decoded document and little else."""
    mtype = media_type(content_type)
    if not body or body.isspace():  # isspace stops at the first other byte; strip() would copy
        raise MissingField("the request body is empty; post the CDR document")
    if mtype in XML_TYPES:
        return _xml(body)
    if mtype in JSON_TYPES:
        return _json(body)
    if mtype == FORM_URLENCODED:
        return _sniff(_form_field(body))
    if mtype == FORM_PLAINTEXT:
        # encode=false: cdr=<raw document>. Old mod_json_cdr sends the bare document with this
        # content type, so a body that already is a document is taken as it is.
        if body.startswith(b"cdr="):
            return _sniff(memoryview(body)[4:])
        if _first_byte(body) in (b"<", b"{"):
            return _sniff(body)
        raise MissingField("the form has no cdr field (expected a body of cdr=<document>)")
    if mtype == FORM_BASE64:
        value = _form_field(body)
        if b" " in value:
            # A base64 '+' that was not url-escaped arrives as a space: put it back.
            value = value.replace(b" ", b"+")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise NotWellFormed("the cdr field is not valid base64") from exc
        del value
        return _sniff(raw)
    if mtype == MULTIPART:
        return _sniff(_multipart_field(body, content_type))
    raise UnsupportedMediaType(
        f"content type {mtype or '(none)'!r} is not supported; send one of: {', '.join(SUPPORTED)}"
    )


def _form_field(body: bytes) -> bytes:
    """The decoded value of the form's ``cdr`` field (found without splitting, i.e. copying,
    the whole body)."""
    start, size = 0, len(body)
    while start <= size:
        end = body.find(b"&", start)
        if end < 0:
            end = size
        eq = body.find(b"=", start, end)
        if eq >= 0 and form_unquote(body[start:eq]) == b"cdr":
            # Searched in place: a slice to call isspace() on would copy the whole field.
            if _NOT_SPACE.search(body, eq + 1, end) is None:
                raise MissingField("the cdr field is empty")
            return form_unquote(body, eq + 1, end)
        start = end + 1
    raise MissingField("the form has no cdr field")


_QP_TABLE = bytes.maketrans(b"%+", b"= ")


def form_unquote(raw: bytes, start: int = 0, end: int | None = None) -> bytes:
    """``application/x-www-form-urlencoded`` decoding (``+`` is a space, ``%XX`` a byte) of
    ``raw[start:end]``.

    urllib's unquote spends ~0.5 ms on a 15 KB CDR, more than everything else ingest does.
    Quoted-printable is the same escape with ``=`` instead of ``%``, and binascii decodes it in
    C, so we translate and let it work (15x faster). That is exact when the input has no raw
    ``=`` or line break and every ``%`` starts a valid escape; each valid escape shrinks the
    output by two bytes, so a length check proves the latter. Anything else takes urllib's path.
    """
    end = len(raw) if end is None else end
    if all(raw.find(char, start, end) < 0 for char in (b"=", b"\n", b"\r")):
        # Translating the whole body and decoding a view of it costs one copy fewer than
        # slicing first; the field is nearly all of the body anyway.
        translated = raw.translate(_QP_TABLE)
        out = binascii.a2b_qp(memoryview(translated)[start:end])
        del translated
        if (end - start) - len(out) == 2 * raw.count(b"%", start, end):
            return out
    return unquote_to_bytes(raw[start:end].replace(b"+", b" "))


_MULTIPART_NAME = re.compile(rb'(?:^|;)\s*name\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)


def _param(content_type: str | None, name: str) -> str | None:
    for part in (content_type or "").split(";")[1:]:
        key, sep, value = part.partition("=")
        if sep and key.strip().lower() == name:
            return value.strip().strip('"') or None
    return None


def _multipart_field(body: bytes, content_type: str | None) -> memoryview:
    """The ``cdr`` part of a ``multipart/form-data`` body (a file part or a plain field), as a
    view into the body: no copy of a 5 MB part."""
    boundary = _param(content_type, "boundary")
    if not boundary:
        raise NotWellFormed("the multipart content type has no boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    view = memoryview(body)
    pos = body.find(delimiter)
    if pos < 0:
        raise NotWellFormed("the multipart body does not contain its boundary")
    while True:
        pos += len(delimiter)
        if body.startswith(b"--", pos):
            break  # the closing delimiter
        line_end = body.find(b"\n", pos)
        if line_end < 0:
            raise NotWellFormed("the multipart body ends inside a part")
        # Part headers up to the first empty line.
        name: bytes | None = None
        cursor = line_end + 1
        while True:
            nl = body.find(b"\n", cursor)
            if nl < 0:
                raise NotWellFormed("the multipart body ends inside a part's headers")
            line = body[cursor:nl].rstrip(b"\r")
            cursor = nl + 1
            if not line:
                break
            header, _, value = line.partition(b":")
            if header.strip().lower() == b"content-disposition":
                match = _MULTIPART_NAME.search(value)
                if match:
                    name = match.group(1) if match.group(1) is not None else match.group(2)
        following = body.find(b"\r\n" + delimiter, cursor)
        if following < 0:
            following = body.find(b"\n" + delimiter, cursor)
            if following < 0:
                raise NotWellFormed("the multipart body is truncated (no closing boundary)")
            after = following + 1
        else:
            after = following + 2
        if name == b"cdr":
            if cursor == following or body[cursor:following].isspace():
                raise MissingField("the cdr field is empty")
            return view[cursor:following]
        pos = after
    raise MissingField("the multipart form has no cdr field")


_NOT_SPACE = re.compile(rb"\S")


def _first_byte(raw: Raw) -> bytes:
    match = _NOT_SPACE.search(raw)
    return bytes(raw[match.start() : match.start() + 1]) if match else b""


def _sniff(raw: Raw) -> Document:
    head = _first_byte(raw)
    if head == b"<":
        return _xml(raw)
    if head in (b"{", b"["):
        return _json(raw)
    raise NotWellFormed("the cdr field holds neither an XML nor a JSON document")


def _xml(raw: Raw) -> Document:
    # Checked without building the tree (the parser builds its own); call_id() parses the text
    # in the rare post without a uuid parameter.
    check_xml(raw)  # type: ignore[arg-type]  # lxml reads any buffer
    text = _utf8(raw, "XML")
    if (tag := root_tag(text)) != "cdr":
        raise NotWellFormed(f"the XML root element is <{tag}>, not <cdr>")
    return Document(text, PayloadKind.FREESWITCH_XML, "application/xml")


def _json(raw: Raw) -> Document:
    # Decoded first: json.loads on bytes would also accept UTF-16/32, which the payload
    # (stored as UTF-8 text) must not be.
    text = _utf8(raw, "JSON")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise NotWellFormed(f"the JSON document is not well-formed: {exc}") from exc
    except RecursionError as exc:
        raise NotWellFormed("the JSON document is nested too deeply") from exc
    if not isinstance(doc, dict):
        raise NotWellFormed("the JSON document must be an object")
    return Document(text, PayloadKind.FREESWITCH_JSON, "application/json", doc)


def _utf8(raw: Raw, what: str) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise NotWellFormed(
            f"the {what} document is not UTF-8 (invalid byte at offset {exc.start})"
        ) from exc
