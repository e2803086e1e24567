# placeholder
import pytest


@pytest.fixture(scope="session")
def pg_url() -> None: ...
