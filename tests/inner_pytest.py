"""Run pytest on a test file of the test's own, in a subprocess, with cdrflow's plugin and none of
the repository's configuration (for tests of the test machinery itself)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def inner_pytest_command(test_file: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
        *("-p", "cdrkit.testing.plugin", "-c", os.devnull),
        *("--rootdir", str(test_file.parent), str(test_file)),
    ]
