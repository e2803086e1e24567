"""``bench.mypyc_probe``: its copy is patched as it says and its comparison reads the right way."""

from __future__ import annotations

from pathlib import Path

from bench import mypyc_probe
from bench.instructions import STAGES


def test_the_copy_holds_every_module_to_compile_and_the_patches_apply(tmp_path: Path) -> None:
    src = tmp_path / "src"
    mypyc_probe.copy_packages(src, mypyc_probe.PATCHES + mypyc_probe.UNFREEZE)
    for stage in STAGES:
        for module in mypyc_probe.MODULES[stage]:
            assert (src / module).is_file(), module
    for rel, old, new in mypyc_probe.PATCHES + mypyc_probe.UNFREEZE:
        text = (src / rel).read_text()
        assert new in text, rel
        assert old not in text.replace(new, ""), rel
    # the workspace itself is untouched
    frozen = (mypyc_probe.ROOT / "libs/cdrkit/cdrkit/frozen.py").read_text()
    assert "__mypyc_attrs__" not in frozen


def test_compare_reports_the_change_and_both_ratios_to_the_floor() -> None:
    pure = {s: 200.0 for s in STAGES} | {f"floor {s}": 100.0 for s in STAGES}
    compiled = {s: 150.0 for s in STAGES} | {f"floor {s}": 999.0 for s in STAGES}
    lines = mypyc_probe.compare(pure, compiled).splitlines()
    assert len(lines) == len(STAGES) + 2
    for line in lines[1:]:
        assert line.split()[1:] == (
            ["800", "600", "-25.0%", "400", "2.00x", "1.50x"]
            if line.startswith("together")
            else ["200", "150", "-25.0%", "100", "2.00x", "1.50x"]
        )
