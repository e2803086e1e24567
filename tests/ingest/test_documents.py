"""Every form a FreeSWITCH posts decodes to the same document; bad input gets a clear code."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote_to_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdr_ingest.documents import decode_post, form_unquote
from cdr_ingest.service import leg_hint
from cdrmodel import PayloadKind
from cdrmodel.errors import (
    InvalidInput,
    MissingField,
    NotWellFormed,
    UnsafeDocument,
    UnsupportedMediaType,
)

INCOMING = "freeswitch/freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml"
TINY_2009 = "freeswitch/freeswitch_xml_cdr_tinycdr_2009_originator_cancel.cdr.xml"
JSON_CDR = "freeswitch/freeswitch_json_cdr_cgrates_answered.json"


def _read(fixtures_dir: Path, name: str) -> bytes:
    return (fixtures_dir / name).read_bytes()


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        ("text/xml", lambda x: x),
        ("application/xml; charset=utf-8", lambda x: x),
        ("application/x-www-form-urlencoded", lambda x: b"cdr=" + quote(x, safe="").encode()),
        ("application/x-www-form-urlencoded", lambda x: b"cdr=" + quote_plus(x).encode()),
        ("application/x-www-form-base64-encoded", lambda x: b"cdr=" + base64.b64encode(x)),
        ("application/x-www-form-plaintext", lambda x: b"cdr=" + x),
    ],
)
def test_every_xml_encoding_gives_the_same_document(
    fixtures_dir: Path, content_type: str, encode: object
) -> None:
    raw = _read(fixtures_dir, INCOMING)
    doc = decode_post(encode(raw), content_type)  # type: ignore[operator]
    assert doc.kind is PayloadKind.FREESWITCH_XML
    assert doc.text == raw.decode()
    # <variables><uuid> (line 13; the caller profile repeats it)
    assert doc.call_id() == "26444af2-5f94-40b5-9578-824ce7c75ab8"


def test_old_document_takes_call_id_from_caller_profile(fixtures_dir: Path) -> None:
    doc = decode_post(_read(fixtures_dir, TINY_2009), "text/xml")
    # no <uuid> variable in 2009; callflow/caller_profile/uuid holds it
    assert doc.call_id() == "91353230-461f-11de-aa7f-b10b4edc0c92"


def test_json_raw_and_in_form_field(fixtures_dir: Path) -> None:
    raw = _read(fixtures_dir, JSON_CDR)
    uuid = json.loads(raw)["variables"]["uuid"]
    for body, ctype in [
        (raw, "application/json"),
        (b"cdr=" + quote(raw, safe="").encode(), "application/x-www-form-urlencoded"),
    ]:
        doc = decode_post(body, ctype)
        assert doc.kind is PayloadKind.FREESWITCH_JSON
        assert doc.call_id() == uuid
        assert doc.content_type == "application/json"


@pytest.mark.parametrize(
    ("body", "ctype", "error", "code"),
    [
        (b"", "text/xml", MissingField, 400),
        (b"<cdr><variables>", "text/xml", NotWellFormed, 400),
        (b"not xml at all", "text/xml", NotWellFormed, 400),
        (b"<other/>", "text/xml", NotWellFormed, 400),
        (b"foo=bar", "application/x-www-form-urlencoded", MissingField, 400),
        (b"cdr=", "application/x-www-form-urlencoded", MissingField, 400),
        (b"cdr= \t\r\n\x0b\x0c&x=1", "application/x-www-form-urlencoded", MissingField, 400),
        (b"x=1&cdr=  ", "application/x-www-form-base64-encoded", MissingField, 400),
        (b"cdr=\x0b<cdr/>", "application/x-www-form-urlencoded", NotWellFormed, 400),
        (b"cdr=%%%zz", "application/x-www-form-urlencoded", NotWellFormed, 400),
        (b"cdr=!!!!", "application/x-www-form-base64-encoded", NotWellFormed, 400),
        (b"{not json", "application/json", NotWellFormed, 400),
        (b"[1, 2]", "application/json", NotWellFormed, 400),
        (b"<cdr/>", "image/png", UnsupportedMediaType, 415),
        (b"<cdr/>", None, UnsupportedMediaType, 415),
    ],
)
def test_bad_input_is_refused_with_its_reason(
    body: bytes, ctype: str | None, error: type[InvalidInput], code: int
) -> None:
    with pytest.raises(error) as info:
        decode_post(body, ctype)
    assert info.value.status == code
    assert info.value.detail  # a sentence, not an empty string


def test_documents_with_a_doctype_are_refused() -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE cdr [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<cdr><variables><uuid>&x;</uuid></variables></cdr>"
    )
    with pytest.raises(UnsafeDocument) as info:
        decode_post(xxe, "text/xml")
    assert info.value.status == 400
    assert "root:" not in info.value.detail


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (None, (None, None)),
        ("a_abc", ("abc", True)),
        ("abc", ("abc", None)),
        ("a_", (None, True)),
    ],
)
def test_uuid_parameter_marks_the_a_leg(param: str | None, expected: tuple[object, ...]) -> None:
    assert leg_hint(param) == expected


@given(st.binary(max_size=300), st.sampled_from(["", "/:<> ", "%"]))
def test_form_unquote_matches_urllib(data: bytes, safe: str) -> None:
    quoted = quote_plus(data, safe=safe).encode()
    assert form_unquote(quoted) == unquote_to_bytes(quoted.replace(b"+", b" "))
    assert form_unquote(quote(data, safe="").encode()) == data


@given(st.text(alphabet="%0123456789abcdefABCDEFxz+=\n ", max_size=40))
def test_form_unquote_on_malformed_escapes_matches_urllib(text: str) -> None:
    raw = text.encode()
    assert form_unquote(raw) == unquote_to_bytes(raw.replace(b"+", b" "))


@given(st.binary(max_size=200), st.binary(max_size=20), st.binary(max_size=20))
def test_form_unquote_of_a_range_matches_the_slice(
    data: bytes, before: bytes, after: bytes
) -> None:
    quoted = quote_plus(data).encode()
    body = before + quoted + after
    start, end = len(before), len(before) + len(quoted)
    assert form_unquote(body, start, end) == form_unquote(quoted) == data


@pytest.mark.parametrize(
    "content_type",
    [
        'multipart/form-data; boundary="b-1"',
        "multipart/form-data; charset=utf-8; boundary=b-1",
        "Multipart/Form-Data; BOUNDARY=b-1",
    ],
)
def test_multipart_cdr_part_found_among_others(fixtures_dir: Path, content_type: str) -> None:
    raw = _read(fixtures_dir, INCOMING)
    body = (
        b"preamble\r\n--b-1\r\n"
        b'Content-Disposition: form-data; filename="cdr.xml"; name="other"\r\n\r\n<x/>\r\n'
        b"--b-1\n"  # bare LF line ends, as some clients write them
        b"Content-Disposition: form-data; name=cdr\n\n" + raw + b"\n--b-1--\n"
    )
    doc = decode_post(body, content_type)
    assert doc.text == raw.decode()


# Ingest checks a posted XML document without building its tree (cdrkit.xml.check_xml) and reads
# the root element's name from the text (root_tag): the same documents as a full parse must pass.
ROOTS = [
    (b"<cdr/>", "cdr"),
    (b'<?xml version="1.0" encoding="UTF-8"?>\n<cdr><a/></cdr>', "cdr"),
    (b"\xef\xbb\xbf<cdr/>", "cdr"),  # UTF-8 byte order mark
    (b"<!-- <html> --><?pi <x>?>\n <cdr core-uuid='1'/>", "cdr"),
    (b'<cdr a=">" b="/>"><x/></cdr>', "cdr"),
    (b'<cdr xmlns=""/>', "cdr"),
    (b'<cdr xmlns="urn:x"/>', "{urn:x}cdr"),
    (b"<cdr\n  xmlns = 'urn:y' b='1'/>", "{urn:y}cdr"),
    (b'<p:cdr xmlns:p="urn:x"/>', None),
    (b"<cdrx/>", "cdrx"),
    (b"<html><cdr/></html>", "html"),
]


@pytest.mark.parametrize(("document", "tag"), ROOTS)
def test_xml_root_is_named_as_a_full_parse_names_it(document: bytes, tag: str | None) -> None:
    from cdrkit.xml import parse_xml

    assert tag is None or parse_xml(document).tag == tag
    if parse_xml(document).tag == "cdr":
        doc = decode_post(document, "text/xml")
        assert doc.kind is PayloadKind.FREESWITCH_XML
    else:
        with pytest.raises(NotWellFormed, match="root element"):
            decode_post(document, "text/xml")


def test_call_id_without_uuid_parameter_comes_from_the_checked_document(
    fixtures_dir: Path,
) -> None:
    doc = decode_post(_read(fixtures_dir, TINY_2009), "text/xml")
    assert doc.tree is None  # checked, not built
    # A 2009 document: no uuid variable, the caller profile's uuid.
    assert doc.call_id() == "91353230-461f-11de-aa7f-b10b4edc0c92"
