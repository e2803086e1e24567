"""Instructions of named regions of a Python process, by valgrind's callgrind (the same count for
the same inputs whatever else the machine does): what ``bench.instructions``,
``bench.parser_mapping`` and ``bench.handlers_cpu`` count with.

The child, once its inputs are built, runs each piece of work in ``with region(name):``. The
first region switches instrumentation on (``--instr-atstart=no``: start-up costs a fraction of
the time); each region's start and end is a marker, ``os.sched_yield`` (a system call nothing
else here makes), before which callgrind dumps (``--dump-before=sched_yield``): the dumps
alternate between the gap before a region and the region alone. Without ``count`` (no valgrind)
``region`` only runs the work. ``per_item`` turns regions ``stage@n`` and ``stage@2n`` into
(I(2n) - I(n)) / n, which cancels what a stage does once (first calls, caches, imports).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

_NAMES = "CDRFLOW_CALLGRIND_REGIONS"  # the file the child lists its regions in, in order
_SUMMARY = re.compile(rb"^summary:\s*(\d+)", re.MULTILINE)
_regions: list[str] = []  # the regions run so far, in order


@contextlib.contextmanager
def region(name: str) -> Iterator[None]:
    """Count what runs inside as the region ``name`` (when run by ``count``)."""
    names = os.environ.get(_NAMES)
    if names is None:
        yield
        return
    if not _regions:  # the first: instrumentation on, and the names written at exit
        pid = str(os.getpid())
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, stdout=DEVNULL)
        atexit.register(lambda: Path(names).write_text("".join(f"{r}\n" for r in _regions)))
    _regions.append(name)
    os.sched_yield()  # callgrind dumps what ran before the region
    yield
    os.sched_yield()  # and here the region alone


def n_and_2n(stages: Iterable[tuple[str, Callable[[int], Any]]], n: int) -> None:
    """Each stage on n and then on 2n items, in regions ``stage@n`` and ``stage@2n``."""
    for name, run in stages:
        for k in (n, 2 * n):
            with region(f"{name}@{k}"):
                run(k)


def count(*argv: str) -> dict[str, int]:
    """Instructions of each region ``python *argv`` runs, by name, in the order they ran."""
    with tempfile.TemporaryDirectory(prefix="cdrflow-callgrind-") as tmp:
        out, names = Path(tmp) / "callgrind.out", Path(tmp) / "regions"
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                "--dump-before=sched_yield",
                f"--callgrind-out-file={out}",
                sys.executable,
                *argv,
            ],
            env=dict(os.environ, PYTHONHASHSEED="0", **{_NAMES: str(names)}),
            check=False,
            stdout=DEVNULL,
            stderr=subprocess.PIPE,
        )
        if done.returncode:
            raise RuntimeError(f"callgrind over {argv}: {done.stderr[-3000:].decode()}")
        regions = names.read_text().splitlines() if names.exists() else []
        dumps = sorted(Path(tmp).glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
        if len(dumps) != 2 * len(regions) or len(set(regions)) != len(regions):
            raise RuntimeError(f"{len(dumps)} callgrind dumps for the regions {regions}")
        return {  # dump 2k: region k alone
            name: int(_SUMMARY.findall(dump.read_bytes())[0])
            for name, dump in zip(regions, dumps[1::2], strict=True)
        }


def per_item(counts: Mapping[str, int]) -> dict[str, float]:
    """(I(2n) - I(n)) / n of each stage, from its regions ``stage@n`` and ``stage@2n``."""
    figures = {}
    for name, two in counts.items():
        stage, _, k = name.rpartition("@")
        n = int(k) // 2
        if f"{stage}@{n}" in counts and 2 * n == int(k):
            figures[stage] = (two - counts[f"{stage}@{n}"]) / n
    return figures
