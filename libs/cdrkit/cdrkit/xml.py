"""Safe XML parsing for documents from the outside world (CDRs posted by switches).

Every XML document cdrflow reads comes from the network, so: no entity is ever substituted, no
DTD or external resource is ever fetched (XXE, billion laughs), and a document that declares a
DOCTYPE is refused outright, because lxml expands internal entities when an *attribute* that
references one is read, and no switch writes a DOCTYPE into a CDR.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Final

from lxml import etree

from cdrmodel.errors import NotWellFormed, UnsafeDocument


class _RefuseExternal(etree.Resolver):
    """Second line of defence: any external entity or DTD libxml2 asks for resolves to nothing."""

    # lxml calls resolve(url, public_id, context); lxml-stubs forgets the context argument.
    def resolve(self, system_url: str, public_id: str, context: object) -> Any:  # type: ignore[override]
        return self.resolve_string("", context, base_url=None)


def _safe_parser(encoding: str | None = None) -> etree.XMLParser:
    parser = etree.XMLParser(
        encoding=encoding,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        # Real CDRs reach 3-5 MB (long calls, looping IVRs); libxml2's default limits (10 MB text
        # nodes, depth 256) would refuse legitimate large documents. Entities are never expanded,
        # so lifting the limits does not open an amplification attack.
        huge_tree=True,
        # Measured ~10 % faster on CDRs (fewer text nodes to build); whitespace between elements
        # carries nothing in a CDR.
        remove_blank_text=True,
        remove_comments=True,
        remove_pis=True,
        # Not collect_ids=False: with libxml2 2.14 it makes the parser load external parameter
        # entities (<!ENTITY % p SYSTEM "file:///etc/...">%p;), a local file read.
    )
    parser.resolvers.add(_RefuseExternal())
    return parser


# Built once: building a parser costs more than parsing a CDR. lxml serialises concurrent use of
# one parser between threads, so sharing it is safe.
SAFE_PARSER: Final = _safe_parser()
# For ``str`` input the text is already decoded, so an ``encoding=`` declaration inside it must be
# ignored; its UTF-8 bytes are parsed with the encoding forced.
_UTF8_PARSER: Final = _safe_parser("utf-8")


def parse_xml(payload: bytes | str) -> etree._Element:
    """Parse an untrusted document. ``NotWellFormed`` for anything libxml2 refuses,
    ``UnsafeDocument`` for a document that declares a DOCTYPE."""
    try:
        if isinstance(payload, str):
            root = _ascii_text(payload)
            if root is None:
                root = etree.fromstring(payload.encode("utf-8"), _UTF8_PARSER)
        else:
            root = etree.fromstring(payload, SAFE_PARSER)
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


def _ascii_text(payload: str) -> etree._Element | None:
    """The root of an ASCII ``str`` parsed from its own buffer, or None to take the encoding
    path (also when libxml2 finds no root, which that path then refuses). lxml hands an ASCII
    string's characters to libxml2 as they are, declared UTF-8: the same bytes, encoding and
    parser as ``payload.encode("utf-8")`` under ``_UTF8_PARSER``, less the copy (~13,700
    instructions of a 13 KB CDR's ~850,000; issue 15, ninth round). ``str.isascii`` reads a
    flag. A text with an encoding declaration, which lxml refuses as a ``str``, goes the
    encoding path, whose outcome is then the former one; ``tests/cdrkit/test_xml_text.py``
    holds the two paths to each other."""
    if not payload.isascii():
        return None
    try:
        return etree.fromstring(payload, _UTF8_PARSER)
    except ValueError:  # "Unicode strings with encoding declaration are not supported"
        return None


class _DoctypeFound(Exception):
    """Raised by the checking parser's target: stops libxml2 at the DOCTYPE, before its
    declarations are read."""


class _CheckTarget:
    """A parser target that builds nothing: libxml2 still applies every well-formedness rule, but
    no element, attribute or text object is made (a CDR is checked in ~40 % of the time its tree
    takes to build: issue 15). A DOCTYPE stops the parse at once."""

    def doctype(self, name: str | None, public_id: str | None, system_url: str | None) -> None:
        raise _DoctypeFound

    def close(self) -> None:
        return None


_CHECKERS = threading.local()  # a target parser keeps state while it parses: one per thread


def _checker() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_CHECKERS, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            target=_CheckTarget(),  # type: ignore[arg-type]  # lxml calls only what it has
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=True,
        )
        parser.resolvers.add(_RefuseExternal())
        _CHECKERS.parser = parser
    return parser


def check_xml(payload: bytes) -> None:
    """What ``parse_xml`` refuses, refused the same way (``NotWellFormed``, ``UnsafeDocument``
    for a DOCTYPE), without building the tree: for a caller that only needs to know the document
    is sound (ingest's acceptance check). See ``root_tag`` for the root element's name."""
    try:
        etree.fromstring(payload, _checker())
    except _DoctypeFound:
        raise UnsafeDocument(
            "the document declares a DOCTYPE; CDRs never do, and entity declarations are refused"
        ) from None
    except etree.XMLSyntaxError as exc:
        raise NotWellFormed(f"the XML document is not well-formed: {exc.msg}") from exc
    except ValueError as exc:
        raise NotWellFormed(f"the XML document is not well-formed: {exc}") from exc


# The prolog before the root element of a document without DOCTYPE: a BOM, white space, the XML
# declaration, processing instructions, comments.
_PROLOG: Final = re.compile(r"\ufeff?(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
_START_TAG: Final = re.compile(r"<([^\s/>]+)((?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*/?>")
_DEFAULT_NS: Final = re.compile(r"\sxmlns\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


def root_tag(text: str) -> str:
    """The root element's tag of a document ``check_xml`` accepted, as lxml names it when the
    root has no prefix (``{uri}name`` under a default namespace declared on it, else ``name``);
    a prefixed root is returned as written (``p:name``)."""
    match = _START_TAG.match(text, _PROLOG.match(text).end())  # type: ignore[union-attr]
    if match is None:  # not reached for a checked document
        raise NotWellFormed("the XML document has no root element")
    name, attributes = match.groups()
    if ":" not in name and (ns := _DEFAULT_NS.search(attributes)):
        uri = ns.group(1) if ns.group(1) is not None else ns.group(2)
        if uri:
            return f"{{{uri}}}{name}"
    return name
