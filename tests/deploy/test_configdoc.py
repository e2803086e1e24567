"""docs/configuration.md is generated from the settings classes and committed: stale fails."""

from __future__ import annotations

from cdrflow import configdoc


def test_committed_configuration_page_is_current() -> None:
    committed = configdoc.PAGE.read_text(encoding="utf-8")
    assert committed == configdoc.render(), "run `python -m cdrflow.configdoc --write`"


def test_every_service_variable_is_on_the_page() -> None:
    page = configdoc.render()
    names = {v.name for v in configdoc.variables()}
    assert {"CDRFLOW_DATABASE_URL", "INGEST_TOKENS", "RECORDINGS_LOCAL_DAYS"} <= names
    assert "INGEST_BEARER_TOKENS" not in names
    for name in names:
        assert f"`{name}`" in page
    assert configdoc.main(["--check"]) == 0


def test_runner_variables_are_the_ones_the_cli_reads() -> None:
    import re
    from pathlib import Path

    cli = (Path(configdoc.__file__).parent / "cli.py").read_text(encoding="utf-8")
    read = set(re.findall(r'envvar="(CDRFLOW_[A-Z_]+)"', cli))
    assert read == set(configdoc.RUNNER_VARIABLES)
