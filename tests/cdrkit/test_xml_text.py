"""``cdrkit.xml.parse_xml`` on an ASCII ``str`` parses the string's own buffer (issue 15, ninth
round) instead of its UTF-8 copy: held to the former code (the copy under ``_UTF8_PARSER``,
verbatim below) on the FreeSWITCH fixtures, hostile documents and random mutations of them:
the same tree, or the same refusal with the same message."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from lxml import etree

from cdrkit import xml as cdrxml
from cdrmodel.errors import NotWellFormed, UnsafeDocument

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def former_parse_xml(payload: bytes | str) -> etree._Element:
    """``cdrkit.xml.parse_xml`` before the ninth round, verbatim."""
    try:
        if isinstance(payload, str):
            root = etree.fromstring(payload.encode("utf-8"), cdrxml._UTF8_PARSER)
        else:
            root = etree.fromstring(payload, cdrxml.SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise NotWellFormed(f"the XML document is not well-formed: {exc.msg}") from exc
    except ValueError as exc:  # lone surrogates in a str, lxml's own refusals
        raise NotWellFormed(f"the XML document is not well-formed: {exc}") from exc
    if root is None:
        raise NotWellFormed("the XML document is empty")
    if root.getroottree().docinfo.internalDTD is not None:
        raise UnsafeDocument(
            "the document declares a DOCTYPE; CDRs never do, and entity declarations are refused"
        )
    return root


def outcome(parse: object, text: str) -> tuple[str, ...]:
    try:
        root = parse(text)  # type: ignore[operator]
    except (NotWellFormed, UnsafeDocument) as exc:
        return (type(exc).__name__, str(exc))
    info = root.getroottree().docinfo
    return (
        "tree",
        etree.tostring(root.getroottree(), encoding="unicode"),
        repr([(e.tag, e.text, e.tail, dict(e.attrib)) for e in root.iter()]),
        str(info.xml_version),
        str(info.standalone),
    )


HOSTILE = [
    "",
    "   ",
    "<cdr/>",
    "<cdr>",
    "<cdr></cdx>",
    "not xml at all",
    '<?xml version="1.0"?><cdr a="1"><variables><uuid>x</uuid></variables></cdr>',
    '<?xml version="1.0" encoding="ISO-8859-1"?><cdr><x>caf&#233;</x></cdr>',
    '<?xml version="1.0" encoding="UTF-16"?><cdr><x>y</x></cdr>',
    "<?xml version='1.0' encoding='utf-8'?>\n<cdr>\n  <x> a </x>\n</cdr>",
    '<!DOCTYPE cdr [<!ENTITY e "boom">]><cdr>&e;</cdr>',
    '<!DOCTYPE cdr SYSTEM "file:///etc/passwd"><cdr/>',
    "<cdr><![CDATA[ <raw> ]]><!-- gone --><?pi gone?>&amp;&lt;&#x41;</cdr>",
    "<cdr>&undefined;</cdr>",
    "<cdr>&#0;</cdr>",
    "<cdr>\x01</cdr>",
    "<cdr xmlns='urn:x'><p:a xmlns:p='urn:p'/></cdr>",
    "<cdr>caf\u00e9 \u2603 \U0001f600</cdr>",  # not ASCII: the former path
    "\ufeff<cdr/>",
    "<cdr>\r\n<x>\r</x></cdr>",
    "<cdr/><second/>",
    "<cdr a='1' a='2'/>",
]


def _texts() -> list[str]:
    return [p.read_text() for p in sorted((FIXTURES / "freeswitch").glob("*.xml"))]


def _mutations(texts: list[str], count: int, seed: int = 15) -> list[str]:
    rng = random.Random(seed)
    junk = [
        "<",
        ">",
        "&",
        ";",
        "/",
        "=",
        '"',
        "'",
        "!",
        "?",
        "\n",
        " ",
        "a",
        "&amp;",
        "]]>",
        "<?xml version='1.0' encoding='latin-1'?>",
        "<!DOCTYPE x>",
        "\u00e9",
        "\t",
        "%",
    ]
    out = []
    for _ in range(count):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text) + 1)
            kind = rng.random()
            if kind < 0.4:
                text = text[:at] + rng.choice(junk) + text[at:]
            elif kind < 0.7:
                text = text[:at] + text[at + rng.randint(1, 40) :]
            else:
                text = text[:at]
        out.append(text)
    return out


def test_the_documents_parse_as_before() -> None:
    texts = _texts() + HOSTILE
    assert any(t.isascii() for t in texts)
    assert not all(t.isascii() for t in texts)
    for text in texts:
        assert outcome(cdrxml.parse_xml, text) == outcome(former_parse_xml, text), text[:200]


def test_random_mutations_parse_as_before() -> None:
    texts = _mutations(_texts() + HOSTILE[6:13], 600)
    kinds = {outcome(former_parse_xml, t)[0] for t in texts}
    assert kinds == {"tree", "NotWellFormed", "UnsafeDocument"}  # the mutations reach each
    for text in texts:
        assert outcome(cdrxml.parse_xml, text) == outcome(former_parse_xml, text), text[:200]


def test_an_encoding_declaration_takes_the_former_path() -> None:
    text = '<?xml version="1.0" encoding="ISO-8859-1"?><cdr><x>y</x></cdr>'
    assert cdrxml._ascii_text(text) is None
    assert cdrxml.parse_xml(text).findtext("x") == "y"


@pytest.mark.parametrize("text", ["<cdr><x>y</x></cdr>", "\n<cdr/>"])
def test_ascii_text_is_parsed_from_the_string(text: str) -> None:
    root = cdrxml._ascii_text(text)
    assert root is not None
    assert root.tag == "cdr"
