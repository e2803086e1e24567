"""Stats plugins: ``plugin(call, ctx)`` runs once per counted call (never for a duplicate).

A plugin is any callable taking the ``Call`` and a ``PluginContext``:

* ``ctx.increment(name, value=1)`` adds ``value`` to the counter ``plugin:<name>`` of every cell
  the call belongs to (all calls, its carrier, account, direction, tenant);
* ``ctx.alert(kind, text, **labels)`` raises an alert. Alerts are deduplicated on
  (kind, bucket, labels): the same alert raised again in the same bucket is stored once.

Built-ins: ``totals`` (calls per disposition), ``unexpected_sip`` (SIP codes outside
``STATS_EXPECTED_SIP_CODES``) and ``fraud_prefixes`` (prefix lists with billed-seconds
thresholds, ``STATS_FRAUD_PREFIX_FILE``). Third-party plugins are entry points of the group
``cdrflow.stats_plugins``; ``PluginSet.load`` (``POST /v1/plugins/reload``) finds them again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdr_stats.call_fields import Call
from cdr_stats.settings import StatsSettings
from cdrmodel.errors import InvalidInput

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cdrflow.stats_plugins"


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    text: str
    labels: dict[str, str]
    bucket: int

    @property
    def dedup_key(self) -> str:
        ident = json.dumps([self.kind, self.bucket, sorted(self.labels.items())])
        return hashlib.sha256(ident.encode()).hexdigest()[:40]


class PluginContext:
    """What a plugin may do with a call; collects counters and alerts for the batch."""

    __slots__ = ("alerts", "bucket", "increments")

    def __init__(self, bucket: int) -> None:
        self.bucket = bucket
        self.increments: list[tuple[str, float]] = []
        self.alerts: list[Alert] = []

    def increment(self, name: str, value: float = 1) -> None:
        self.increments.append((f"plugin:{name[:120]}", value))

    def alert(self, kind: str, text: str, **labels: object) -> None:
        clean = {str(k): str(v)[:255] for k, v in labels.items()}
        self.alerts.append(Alert(kind[:64], text, clean, self.bucket))


Plugin = Callable[[Call, PluginContext], None]


# ---------------------------------------------------------------------------------------------
# Built-ins


def totals(call: Call, ctx: PluginContext) -> None:
    """Calls per disposition (``plugin:disposition.answered`` …)."""
    ctx.increment(f"disposition.{call.disposition or 'unknown'}")


def unexpected_sip(expected: frozenset[int]) -> Plugin:
    def plugin(call: Call, ctx: PluginContext) -> None:
        code = call.sip_code
        if code is None or code in expected:
            return
        ctx.increment("unexpected_sip")
        carrier = call.carrier or "unknown"
        ctx.alert(
            "unexpected_sip_code",
            f"SIP {code} on carrier {carrier} (expected: {', '.join(map(str, sorted(expected)))})",
            carrier=carrier,
            sip_code=code,
        )

    return plugin


@dataclass
class PrefixLists:
    """Destination prefixes → the billed seconds from which a call to them is suspicious.

    The file is a JSON object ``{"alert<N>": ["prefix", …], …}``: a call whose destination (digits
    only, without a leading ``+`` or ``00``) starts with a listed prefix and is billed at least N
    seconds raises a ``fraud_prefix`` alert (``alert0``: any call). Keys not of that form (like
    ``_note``) are ignored. A number that matches several prefixes uses the longest one.
    """

    thresholds: dict[str, int] = field(default_factory=dict)
    longest: int = 0

    @classmethod
    def load(cls, path: Path) -> PrefixLists:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"fraud prefix file {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise InvalidInput(f"fraud prefix file {path}: not a JSON object")
        lists = cls()
        for key, prefixes in doc.items():
            if not key.startswith("alert") or not key[5:].isdigit():
                continue
            if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
                raise InvalidInput(f"fraud prefix file {path}: {key} is not a list of strings")
            for prefix in prefixes:
                lists.thresholds[prefix] = int(key[5:])
                lists.longest = max(lists.longest, len(prefix))
        return lists

    def match(self, number: str | None) -> tuple[str, int] | None:
        if not number:
            return None
        digits = number.lstrip("+")
        if digits.startswith("00"):
            digits = digits[2:]
        for n in range(min(len(digits), self.longest), 0, -1):
            seconds = self.thresholds.get(digits[:n])
            if seconds is not None:
                return digits[:n], seconds
        return None


def fraud_prefixes(lists: PrefixLists) -> Plugin:
    def plugin(call: Call, ctx: PluginContext) -> None:
        hit = lists.match(call.callee_number)
        if hit is None:
            return
        prefix, seconds = hit
        billsec = call.billsec_s or 0
        if billsec < seconds:
            return
        ctx.increment("fraud_prefix")
        ctx.alert(
            "fraud_prefix",
            f"call {call.call_id} to {call.callee_number} (prefix {prefix}, alert from "
            f"{seconds} s) billed {billsec} s on carrier {call.carrier or 'unknown'}",
            call_id=call.call_id,
            prefix=prefix,
            carrier=call.carrier or "unknown",
        )

    return plugin


# ---------------------------------------------------------------------------------------------
# The set of plugins in use


@dataclass
class PluginSet:
    plugins: dict[str, Plugin] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: StatsSettings, *, reload_modules: bool = False) -> PluginSet:
        """The built-ins named in the settings, then every entry point of the group.

        ``reload_modules``: re-import the modules of entry points already imported, so a
        plugin upgraded in place takes effect. A plugin that fails to load is left out and its
        error reported (``errors``), never fatal to the others.
        """
        found = cls()
        for name in settings.builtin_plugins:
            if name == "totals":
                found.plugins[name] = totals
            elif name == "unexpected_sip":
                found.plugins[name] = unexpected_sip(settings.expected_sip_codes)
            elif name == "fraud_prefixes":
                path = settings.fraud_prefix_file
                if path is not None:
                    found.plugins[name] = fraud_prefixes(PrefixLists.load(path))
            else:
                found.errors[name] = "no built-in plugin of that name"
        if settings.entry_point_plugins:
            found._load_entry_points(reload_modules)
        return found

    def _load_entry_points(self, reload_modules: bool) -> None:
        importlib.invalidate_caches()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            name = ep.name
            try:
                if reload_modules and ep.module in sys.modules:
                    importlib.reload(sys.modules[ep.module])
                plugin = ep.load()
                if not callable(plugin):
                    raise TypeError(f"{ep.value} is not callable")
            except Exception as exc:
                log.warning("stats plugin %s (%s) failed to load: %s", name, ep.value, exc)
                self.errors[name] = f"{type(exc).__name__}: {exc}"
                continue
            if name in self.plugins:
                self.errors[name] = "name already taken by another plugin"
                continue
            self.plugins[name] = plugin

    def describe(self) -> dict[str, Any]:
        return {"plugins": sorted(self.plugins), "errors": dict(self.errors)}


def run_plugins(
    plugins: Iterable[tuple[str, Plugin]],
    call: Call,
    ctx: PluginContext,
    on_error: Callable[[str, Exception], None],
) -> None:
    for name, plugin in plugins:
        try:
            plugin(call, ctx)
        except Exception as exc:  # a broken plugin must not stop the counting
            on_error(name, exc)
