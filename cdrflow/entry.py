"""The ``cdrflow`` console script. ``cdrflow edge`` (the agent, and its ``status`` and
``resend-rejected``) goes straight to ``cdrflow.edge_cli`` without loading the command framework
and the platform's imports: the agent runs on small boxes and must start in well under a second.
Everything else, ``cdrflow edge --help`` included, is ``cdrflow.cli``."""

from __future__ import annotations

import sys

_EDGE_FAST = (
    ["edge"],
    ["edge", "status"],
    ["edge", "status", "--json"],
    ["edge", "resend-rejected"],
)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in _EDGE_FAST:
        from cdrflow.edge_cli import run_task

        run_task(args[1:])
        return
    from cdrflow.cli import main as cli_main

    cli_main(argv)
