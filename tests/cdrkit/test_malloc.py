"""cdrkit.malloc: large blocks stay on the heap instead of being faulted in on every use."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# What a batch's store statement does (cdrkit.malloc): three 2 MiB buffers alive at once, then
# freed; 30 times. Prints the minor page faults it took.
_CHURN = """
import resource, sys
if sys.argv[1] == "tuned":
    from cdrkit.malloc import keep_large_blocks
    assert keep_large_blocks()
def batch():
    blocks = [bytearray(2 << 20) for _ in range(3)]
    del blocks
batch()  # first use: faulted in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_large_blocks_are_reused_not_faulted_in_again() -> None:
    default, tuned = _faults("default"), _faults("tuned")
    # glibc's defaults give the freed 6 MiB back to the system every time (~1,500 faults a
    # batch, 30 times over); kept, the same pages are reused.
    assert default > 10_000
    assert tuned < default / 10
