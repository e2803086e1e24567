# placeholder: being written (TansuBroker + fixtures tansu, fresh_tansu, kafka_url)
import pytest


@pytest.fixture(scope="session")
def tansu() -> None: ...


@pytest.fixture
def fresh_tansu() -> None: ...


@pytest.fixture
def kafka_url() -> None: ...
