"""Instruction counts of named regions of a Python process, by valgrind's callgrind: the same
count for the same inputs whatever else the machine does (docs/performance.md, "Seventh round").
The in-process harnesses (``bench.instructions``, ``bench.parser_mapping``,
``bench.handlers_cpu``) all count this way.

In the child, after its inputs are built, each piece of work runs in ``with region(name):``. The
first region switches callgrind's instrumentation on (the run starts with it off: start-up and
inputs cost a fraction of the time that way) and every region's start and end is a marker,
``os.sched_yield`` (a system call nothing else here makes), before which callgrind writes the
counts so far (``--dump-before=sched_yield``): the dumps alternate between what ran before a
region and the region alone. Outside ``count`` (no valgrind), ``region`` only runs the work.

In the parent, ``count(*argv)`` runs ``python *argv`` under callgrind and returns each region's
instructions by name; ``per_item`` turns regions named ``stage@n`` and ``stage@2n`` (the work on
n and on 2n items) into instructions per item, (I(2n) - I(n)) / n, which cancels whatever a
stage does once (first calls, caches, imports).
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
        counts = {}
        for name, dump in zip(regions, dumps[1::2], strict=True):  # dump 2k: region k alone
            found = _SUMMARY.search(dump.read_bytes())
            if found is None:
                raise RuntimeError(f"no summary line in {dump}")
            counts[name] = int(found.group(1))
        return counts


def per_item(counts: Mapping[str, int]) -> dict[str, float]:
    """(I(2n) - I(n)) / n of each stage, from its regions ``stage@n`` and ``stage@2n``."""
    sizes: dict[str, list[int]] = {}
    for name in counts:
        stage, _, k = name.rpartition("@")
        sizes.setdefault(stage, []).append(int(k))
    figures = {}
    for stage, found in sizes.items():
        n, two = sorted(found)
        assert two == 2 * n, (stage, found)
        figures[stage] = (counts[f"{stage}@{two}"] - counts[f"{stage}@{n}"]) / n
    return figures
