"""mod_xml_cdr specifics: parsing is safe (no external entity, no expansion), malformed input is
refused with its reason, a huge document or text node still parses."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from cdr_parser.freeswitch import (
    map_xml,
    parse_xml,
    xml_call_id,
)
from cdrkit.xml import SAFE_PARSER as SAFE_XML_PARSER
from cdrmodel import Leg
from cdrmodel.errors import InvalidInput, NotWellFormed, UnmappableRecord
from tests.parser.freeswitch.documents import (
    ERROR_CALL,
    INCOMING_B,
    TINY_2009,
    all_text,
)


def test_xxe_external_entities_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-PASSWORD")
    # A file that, if loaded as an external parameter entity, would declare an entity.
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY leak "TOP-SECRET-FROM-DTD">')
    general = (
        f'<?xml version="1.0"?><!DOCTYPE cdr [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
        "<cdr><variables><uuid>&xxe;</uuid></variables></cdr>"
    )
    parameter = (
        f'<?xml version="1.0"?><!DOCTYPE cdr [<!ENTITY % p SYSTEM "{dtd.as_uri()}"> %p;]>'
        "<cdr><variables><uuid>&leak;</uuid></variables></cdr>"
    )
    # error-based exfiltration: the file's content would end up in a parser error message
    error_based = (
        f'<?xml version="1.0"?><!DOCTYPE cdr [<!ENTITY % file SYSTEM "{secret.as_uri()}">'
        "<!ENTITY % eval \"<!ENTITY &#x25; error SYSTEM 'file:///nonexistent/%file;'>\">"
        "%eval; %error;]><cdr/>"
    )
    for doc in (general, parameter, error_based):
        with pytest.raises(InvalidInput) as caught:
            parse_xml(doc.encode())
        assert "TOP-SECRET" not in caught.value.detail
    for doc in (general, parameter):
        # and the parser itself reads no file and expands nothing
        root = etree.fromstring(doc.encode(), SAFE_XML_PARSER)
        assert "TOP-SECRET" not in all_text(root)
        assert b"TOP-SECRET" not in etree.tostring(root)
        internal: Any = root.getroottree().docinfo.internalDTD  # stubs lack DTD.entities()
        assert "leak" not in [entity.name for entity in internal.entities()]


def test_billion_laughs_is_not_expanded() -> None:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    for reference in ("&lol9;", "&lol4;"):
        doc = (
            f'<?xml version="1.0"?><!DOCTYPE cdr [{entities}]>'
            f'<cdr switchname="{reference}"><variables><uuid>{reference}</uuid></variables></cdr>'
        ).encode()
        started = time.perf_counter()
        with pytest.raises(InvalidInput):
            parse_xml(doc)
        assert time.perf_counter() - started < 1.0
    # lol4 parses with the module's parser, and element text stays unexpanded
    root = etree.fromstring(doc, SAFE_XML_PARSER)
    assert "lollol" not in all_text(root)


def test_truncated_xml_is_not_well_formed() -> None:
    data = INCOMING_B.read_bytes()
    with pytest.raises(NotWellFormed) as caught:
        parse_xml(data[: len(data) // 2])
    assert caught.value.detail.startswith("the XML document is not well-formed")


@pytest.mark.parametrize("payload", [b"", b"   ", b"cdr=%3Ccdr%3E", b"<cdr><variables></cdr>"])
def test_garbage_is_not_well_formed(payload: bytes) -> None:
    with pytest.raises(NotWellFormed):
        parse_xml(payload)


def test_str_payload_that_is_not_text_is_not_well_formed() -> None:
    with pytest.raises(NotWellFormed):
        parse_xml("<cdr>\udcff</cdr>")  # a lone surrogate cannot be UTF-8


def test_str_payload_with_an_encoding_declaration_parses() -> None:
    text = ERROR_CALL.read_text().replace(
        '<?xml version="1.0"?>', '<?xml version="1.0" encoding="ISO-8859-1"?>'
    )
    text = text.replace("<caller_id_name>IMSI510555550000087", "<caller_id_name>José")
    assert map_xml(parse_xml(text)).caller_name == "José"


def test_document_without_a_start_time_is_unmappable() -> None:
    text = TINY_2009.read_text()
    for name in ("start_epoch", "start_uepoch", "created_time"):
        text = text.replace(f"<{name}>", f"<x_{name}>").replace(f"</{name}>", f"</x_{name}>")
    with pytest.raises(UnmappableRecord, match="no start time"):
        map_xml(parse_xml(text))


def test_document_without_any_call_id_is_unmappable() -> None:
    text = TINY_2009.read_text().replace("<uuid>91353230-461f-11de-aa7f-b10b4edc0c92</uuid>", "")
    root = parse_xml(text)
    assert xml_call_id(root) is None
    with pytest.raises(UnmappableRecord, match="call id"):
        map_xml(root)
    cdr = map_xml(root, call_id_hint="a_91353230-461f-11de-aa7f-b10b4edc0c92")
    assert cdr.call_id == "91353230-461f-11de-aa7f-b10b4edc0c92"
    assert cdr.leg is Leg.A


def test_a_value_the_model_refuses_is_unmappable() -> None:
    text = ERROR_CALL.read_text().replace(
        "<uuid>0006a2fa-b032-43e8-9d70-708f363fe3b7</uuid>", f"<uuid>{'x' * 200}</uuid>", 1
    )
    with pytest.raises(UnmappableRecord, match="call_id"):
        map_xml(parse_xml(text))


def test_five_megabyte_document_with_a_huge_variable_maps() -> None:
    huge = "A%20" * 1_250_000  # 5 MB of percent-encoded text in one variable
    text = INCOMING_B.read_text().replace(
        "<variables>", f"<variables>\n    <sip_multipart>{huge}</sip_multipart>", 1
    )
    assert len(text) > 5_000_000
    cdr = map_xml(parse_xml(text.encode()))
    assert cdr.call_id == "26444af2-5f94-40b5-9578-824ce7c75ab8"
    assert cdr.billsec_s == 24


def test_text_node_beyond_libxml2s_default_limit_parses() -> None:
    # libxml2 refuses text nodes over 10 MB unless huge_tree is on.
    big = "x" * 11_000_000
    text = INCOMING_B.read_text().replace(
        "<variables>", f"<variables>\n    <sip_multipart>{big}</sip_multipart>", 1
    )
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(text.encode(), etree.XMLParser(huge_tree=False))
    assert map_xml(parse_xml(text.encode())).call_id == "26444af2-5f94-40b5-9578-824ce7c75ab8"
