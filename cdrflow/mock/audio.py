"""Real audio for the recordings the mock feed names, so a newcomer can play a mock call.

A few seconds of tone made here (no download, no sample files): a short phrase of notes as 8 kHz
16-bit mono PCM WAV (``wave``, stdlib). ``VOICES`` distinct phrases are written once into
``<local root>/.mock-audio/``; each recorded mock call gets a hard link to one of them at the path
its CDR names (a copy where links are not possible), so a feed running all day adds directory
entries, not megabytes. The path is mapped and checked exactly as the recordings service does
(``cdr_recordings.paths``): a CDR cannot make the feed write outside the local root.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import struct
import wave
from pathlib import Path
from urllib.parse import unquote

from cdr_recordings.paths import RecordingRefused, local_file, relative_path

RATE = 8000
SECONDS = 4.0
VOICES = 6
# Notes (Hz) of each phrase: a dial-tone-like chord, then a short falling/rising line.
_SCALE = (392.0, 440.0, 494.0, 523.3, 587.3, 659.3, 698.5, 784.0)
_VAR = re.compile(r"<(record_path|record_name)>([^<]*)</\1>")


def recording_of(xml: str) -> str | None:
    """The recording a mock FreeSWITCH CDR names (``record_path``/``record_name``), or None."""
    found = {k: unquote(v) for k, v in _VAR.findall(xml)}
    if "record_path" not in found or "record_name" not in found:
        return None
    return f"{found['record_path'].rstrip('/')}/{found['record_name']}"


def tone_frames(voice: int, seconds: float = SECONDS, rate: int = RATE) -> bytes:
    """``seconds`` of a phrase of notes (each with a soft attack and release), 16-bit LE."""
    notes = [_SCALE[(voice * 3 + i * (voice % 3 + 1)) % len(_SCALE)] for i in range(4)]
    per_note = int(seconds * rate / len(notes))
    out = bytearray()
    for freq in notes:
        for i in range(per_note):
            edge = min(i, per_note - i) / (0.02 * rate)
            amp = 9000 * min(1.0, edge)
            sample = amp * (
                0.8 * math.sin(2 * math.pi * freq * i / rate)
                + 0.2 * math.sin(4 * math.pi * freq * i / rate)
            )
            out += struct.pack("<h", int(sample))
    return bytes(out)


def write_wav(path: Path, frames: bytes, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    os.replace(tmp, path)


class AudioWriter:
    """Puts a playable file where a mock CDR says its recording is."""

    def __init__(self, local_root: Path, switch_root: str) -> None:
        self.local_root = local_root
        self.switch_root = switch_root
        self.voices = local_root / ".mock-audio"
        self.written = 0

    def voice(self, n: int) -> Path:
        path = self.voices / f"tone-{n}.wav"
        if not path.exists():
            write_wav(path, tone_frames(n))
        return path

    def write(self, recording_path: str, key: str) -> Path | None:
        """The file for ``recording_path`` (None if it is not under a root we may write)."""
        try:
            target = local_file(
                self.local_root, relative_path(recording_path, self.switch_root, self.local_root)
            )
        except RecordingRefused:
            return None
        if target.exists():
            return target
        source = self.voice(sum(key.encode()) % VOICES)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        self.written += 1
        return target
