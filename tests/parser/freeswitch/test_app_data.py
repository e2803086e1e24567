"""``Source.app_data``: the data of an app's latest app_log entry (issue 15, ninth round: the XML
source looks for it from the end instead of scanning the whole log), held to the former
``scan_apps`` and ``build._AppLog.data`` (verbatim below) on random app_logs, XML and JSON."""

from __future__ import annotations

import random
from typing import Any

import pytest
from lxml import etree

from cdr_parser.freeswitch.json_cdr import JsonSource
from cdr_parser.freeswitch.source import SCANNED_APPS
from cdr_parser.freeswitch.values import clean
from cdr_parser.freeswitch.xml_cdr import XmlSource, parse_xml

NAMES = ["bridge", "record_session", "set", "hangup", "Bridge", "bridge ", ""]
DATA = ["", " ", "sofia/gateway/gw1/2622", " /tmp/x.wav +30 ", "a", "x y"]


def former_xml_scan(app_log: Any) -> dict[str, str]:
    """``XmlSource.scan_apps`` before the ninth round, verbatim (``self._app_log`` → app_log)."""
    found: dict[str, str] = {}
    if app_log is not None:
        # One forward pass: a later entry overwrites an earlier one, so the latest wins.
        for app in app_log.iterchildren("application"):
            name = app.get("app_name")
            if name in SCANNED_APPS:
                found[name] = app.get("app_data") or ""
    return found


def former_json_scan(doc: Any) -> dict[str, str]:
    """``JsonSource.scan_apps`` before the ninth round, verbatim (``self._doc`` → doc)."""
    app_log = doc.get("app_log")
    applications = app_log.get("applications") if isinstance(app_log, dict) else app_log
    found: dict[str, str] = {}
    if isinstance(applications, list):
        for app in applications:  # the latest entry wins
            if isinstance(app, dict):
                name = app.get("app_name")
                data = app.get("app_data")
                if name in SCANNED_APPS and isinstance(data, str):
                    found[name] = data
    return found


def former_data(scan: dict[str, str], name: str) -> str | None:
    """``build._AppLog.data`` before the ninth round: ``clean`` of the scan's entry."""
    return clean(scan.get(name))


def _xml_entry(rng: random.Random) -> str:
    tag = rng.choice(["application"] * 6 + ["app", "p:application"])
    attrs = []
    if rng.random() < 0.9:
        attrs.append(f'app_name="{rng.choice(NAMES)}"')
    if rng.random() < 0.8:
        attrs.append(f'app_data="{rng.choice(DATA)}"')
    if rng.random() < 0.3:
        attrs.append('last_executed="true"')
    rng.shuffle(attrs)
    return f"<{tag} {' '.join(attrs)}/>"


def _xml_document(rng: random.Random) -> str:
    logs = []
    for _ in range(rng.choice([0, 1, 1, 1, 2])):
        entries = "".join(_xml_entry(rng) for _ in range(rng.randint(0, 12)))
        logs.append(f"<app_log>{entries}</app_log>")
    return (
        '<cdr xmlns:p="urn:p"><variables><uuid>u1</uuid></variables>'
        + "".join(logs)
        + "<callflow><caller_profile><uuid>u1</uuid></caller_profile></callflow></cdr>"
    )


def test_xml_app_data_is_the_former_scan() -> None:
    rng = random.Random(1509)
    seen = set()
    for _ in range(1500):
        root = parse_xml(_xml_document(rng))
        source = XmlSource(root)
        logs = list(root.iterchildren("app_log"))
        scan = former_xml_scan(logs[-1] if logs else None)
        for name in ("bridge", "record_session"):
            got = source.app_data(name)
            assert got == former_data(scan, name), (etree.tostring(root), name)
            seen.add(got is None)
    assert seen == {True, False}


def _json_entry(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.05:
        return rng.choice([None, "bridge", 3, ["bridge"]])
    entry: dict[str, Any] = {}
    if rng.random() < 0.9:
        entry["app_name"] = rng.choice([*NAMES, None, 7])
    if rng.random() < 0.85:
        entry["app_data"] = rng.choice([*DATA, None, 5, ["x"]])
    return entry


def _json_document(rng: random.Random) -> dict[str, Any]:
    entries = [_json_entry(rng) for _ in range(rng.randint(0, 12))]
    shape = rng.random()
    app_log: Any
    if shape < 0.45:
        app_log = {"applications": entries}
    elif shape < 0.9:
        app_log = entries
    else:
        app_log = rng.choice([None, "bridge", {"applications": "x"}, {}])
    doc: dict[str, Any] = {"variables": {"uuid": "u1"}}
    if rng.random() < 0.95:
        doc["app_log"] = app_log
    return doc


def test_json_app_data_is_the_former_scan() -> None:
    rng = random.Random(1510)
    seen = set()
    for _ in range(1500):
        doc = _json_document(rng)
        source = JsonSource(doc)
        scan = former_json_scan(doc)
        for name in ("bridge", "record_session"):
            got = source.app_data(name)
            assert got == former_data(scan, name), (doc, name)
            seen.add(got is None)
    assert seen == {True, False}


def test_json_app_name_that_cannot_be_hashed_fails_as_before() -> None:
    doc = {"app_log": [{"app_name": "bridge", "app_data": "x"}, {"app_name": ["bridge"]}]}
    with pytest.raises(TypeError) as former:
        former_json_scan(doc)
    with pytest.raises(TypeError) as now:
        JsonSource(doc).app_data("bridge")
    assert str(now.value) == str(former.value)
