"""The device id: ``EDGE_DEVICE_ID``, else derived from the primary MAC address on the first
start and written to the data dir, so it never changes (not when the NIC list changes, not when
the container moves to a host with another MAC)."""

from __future__ import annotations

import uuid
from pathlib import Path

from cdr_ingest.edge.settings import DEVICE_ID, BadSetting

NET = Path("/sys/class/net")


def primary_mac(net: Path = NET) -> str | None:
    """The MAC of the first physical-looking interface (sorted by name), else ``None``."""
    try:
        names = sorted(p.name for p in net.iterdir())
    except OSError:
        return None
    for name in names:
        if name == "lo" or name.startswith(("docker", "veth", "br-", "virbr")):
            continue
        try:
            mac = (net / name / "address").read_text().strip().lower()
        except OSError:
            continue
        if mac and mac != "00:00:00:00:00:00":
            return mac
    return None


def device_id(data_dir: Path, configured: str | None) -> str:
    """The configured id, else the one stored in ``data_dir/device_id``, else a new one."""
    if configured:
        return configured
    path = data_dir / "device_id"
    if path.exists():
        stored = path.read_text().strip()
        if not DEVICE_ID.fullmatch(stored):
            raise BadSetting(f"{path} holds {stored!r}, not a device id; fix or remove it")
        return stored
    mac = primary_mac()
    new = "edge-" + (mac.replace(":", "") if mac else uuid.uuid4().hex[:12])
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new + "\n")
    tmp.replace(path)
    return new
