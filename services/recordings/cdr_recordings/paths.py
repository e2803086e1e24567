"""The recording path inside a CDR is untrusted input: map it onto the local root, safely.

A switch writes ``/var/lib/freeswitch/recordings/<domain>/archive/2026/Nov/25/<uuid>.wav``;
cdrflow sees the same files under ``RECORDINGS_LOCAL_ROOT``. ``relative_path`` strips the switch's
root (``RECORDINGS_SWITCH_ROOT``) or the local root itself, takes a relative path as relative to
the local root, and refuses anything else: a ``..`` segment (also percent-encoded), an absolute
path outside both roots, a NUL byte, an empty name. ``local_file`` then resolves the result with
``os.path.realpath`` every time it is used, so a symlink placed in the root that points outside is
refused too (the file is opened with ``O_NOFOLLOW`` on the resolved path, so a symlink swapped in
between the check and the open is not followed either).
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from pathlib import Path
from urllib.parse import unquote

from cdrmodel.errors import InvalidInput

MAX_PATH = 1024
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]")

CONTENT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/ogg",
}


class RecordingRefused(InvalidInput):
    """A recording path that does not stay inside the local root."""

    code = "recording_refused"
    status = 403


def relative_path(recording_path: str, switch_root: str, local_root: Path) -> str:
    """The path relative to the local root (``/``-separated), or ``RecordingRefused``."""
    path = recording_path.strip()
    if not path:
        raise RecordingRefused("the recording path is empty")
    if len(path) > MAX_PATH:
        raise RecordingRefused(f"the recording path is longer than {MAX_PATH} characters")
    if "\x00" in path:
        raise RecordingRefused("the recording path contains a NUL byte")
    path = path.replace("\\", "/")
    for form in (path, unquote(path)):
        if ".." in form.split("/"):
            raise RecordingRefused(
                f"the recording path {recording_path[:200]!r} contains a '..' segment"
            )
    if path.startswith("/"):
        norm = posixpath.normpath(path)
        rel = None
        for root in (switch_root.rstrip("/"), local_root.as_posix().rstrip("/")):
            if norm == root:
                break
            if norm.startswith(root + "/"):
                rel = norm[len(root) + 1 :]
                break
        if rel is None:
            raise RecordingRefused(
                f"the recording path {recording_path[:200]!r} is outside the switch's recording "
                f"root {switch_root} and the local root {local_root}"
            )
    else:
        rel = posixpath.normpath(path)
    if rel in ("", ".") or path.endswith(("/", "/.")):
        raise RecordingRefused(f"the recording path {recording_path[:200]!r} names no file")
    return rel


def local_file(local_root: Path, rel: str) -> Path:
    """The real path of ``rel`` under the root; ``RecordingRefused`` when, symlinks resolved, it
    leaves the root. The file need not exist."""
    root = os.path.realpath(local_root)
    real = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, real]) != root or real == root:
        raise RecordingRefused(
            f"the recording {rel[:200]!r} resolves outside the local root (a symlink?)"
        )
    return Path(real)


def open_local(path: Path) -> int:
    """A read-only descriptor on ``path`` (a real path from ``local_file``), never following a
    symlink in its last component; ``FileNotFoundError`` when it is not a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileNotFoundError(f"{path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def audio_format(rel: str) -> str:
    """The file's extension, lower case (``wav``, ``mp3``, ``ogg`` …), or ``""``."""
    name = rel.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def content_type(fmt: str) -> str:
    return CONTENT_TYPES.get(fmt, "application/octet-stream")


def key_segment(value: str | None, default: str) -> str:
    """A safe S3 key segment made from an untrusted value (a tenant, a file name)."""
    if not value:
        return default
    cleaned = _UNSAFE_KEY_CHARS.sub("_", value)[:200].lstrip(".")
    return cleaned or default
