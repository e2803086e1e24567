"""FreeSWITCH mod_xml_cdr / mod_json_cdr documents → :class:`cdrmodel.CDR`.

Pure functions, no I/O. Every rule is listed in ``docs/freeswitch-mapping.md``. The package
follows the document's way through the mapping:

- ``xml_cdr`` / ``json_cdr``: parse one format and present it as a ``source.Source``;
- ``build``: the mapping both formats share (identity, times, routing, ``extra``);
- ``rules``: direction, disposition, missed call, SIP code, recording path, tenant hints;
- ``times``: instants, durations, post-dial delay;
- ``values``: decoding the percent-encoded variable values.

Speed matters (a switch posts one document per leg, some of them megabytes): only the values
the mapping reads are collected and percent-decoded.
"""

from cdr_parser.freeswitch.build import SOURCE
from cdr_parser.freeswitch.json_cdr import json_call_id, map_json, parse_json
from cdr_parser.freeswitch.xml_cdr import map_xml, parse_xml, xml_call_id

__all__ = [
    "SOURCE",
    "json_call_id",
    "map_json",
    "map_xml",
    "parse_json",
    "parse_xml",
    "xml_call_id",
]
