"""Safe XML parsing for documents from the outside world (CDRs posted by switches)."""

from __future__ import annotations

from lxml import etree

from cdrmodel.errors import NotWellFormed

# No entity expansion (XXE, billion laughs), no DTD loading, no network access; huge_tree lifts
# libxml2's depth/size guards that would reject real 3-5 MB CDRs of long calls.
SAFE_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=True,
    remove_comments=True,
    remove_pis=True,
)


def parse_xml(payload: bytes | str) -> etree._Element:
    """Parse an untrusted document; ``NotWellFormed`` with a sentence on any syntax error."""
    if isinstance(payload, str):
        payload = payload.encode()
    try:
        root = etree.fromstring(payload, SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise NotWellFormed(f"the XML document is not well-formed: {exc}") from exc
    if root is None:
        raise NotWellFormed("the XML document is empty")
    return root
