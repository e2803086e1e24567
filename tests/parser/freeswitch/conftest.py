"""Rule tests run once per format."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["xml", "json"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)
