"""``cdrflow edge`` as click commands (help text, the command list); the work is in
``cdrflow.edge_cli``, which the console script also calls directly (``cdrflow.entry``)."""

from __future__ import annotations

import click

from cdrflow.edge_cli import _resend, _settings, _status, run_task


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.pass_context
def edge(ctx: click.Context) -> None:
    """The serial PBX agent: capture Siemens HiPath call lines (serial port, TCP or mock) into a
    durable local queue and deliver them to ingest. Settings: EDGE_* environment variables
    (docs/edge.md); calllogger's TIMEOUT, QUEUE_SIZE, ... apply when the EDGE_ form is unset."""
    if ctx.invoked_subcommand is None:
        run_task([])


@edge.command()
@click.option("--json", "as_json", is_flag=True, help="as JSON")
def status(as_json: bool) -> None:
    """Queue depth, oldest line, last delivery, rejected lines with their reasons."""
    _status(_settings(), as_json)


@edge.command("resend-rejected")
def resend_rejected() -> None:
    """Queue the rejected lines again (same seq); a running agent sends them."""
    _resend(_settings())
