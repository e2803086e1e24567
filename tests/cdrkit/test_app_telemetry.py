"""FastAPI's per-request "is native OpenTelemetry on?" check, remembered per set of global
providers (cdrkit.app.remember_telemetry_check): the same answer as FastAPI's own check."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest
from fastapi.telemetry._asgi import NativeTelemetry
from opentelemetry import trace
from opentelemetry._logs import NoOpLoggerProvider
from opentelemetry._logs import _internal as logs
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.metrics import _internal as metrics

from cdrflow.platform import create_service_app

# Any provider that is not the API's deferred proxy counts as configured (an SDK's, a vendor's).
_GLOBALS = (
    (trace, "_TRACER_PROVIDER", trace.NoOpTracerProvider),
    (metrics, "_METER_PROVIDER", NoOpMeterProvider),
    (logs, "_LOGGER_PROVIDER", NoOpLoggerProvider),
)


def test_remembered_check_follows_the_global_providers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_service_app("ingest", data_dir=tmp_path, bus_url=f"memory://{uuid.uuid4().hex}")
    telemetry = app._native_telemetry  # type: ignore[attr-defined]
    assert "enabled" in vars(telemetry)  # the remembered check is installed
    for module, name, _ in _GLOBALS:
        monkeypatch.setattr(module, name, None)
    for env in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.delenv("OTEL_PYTHON_LOGGER_PROVIDER", raising=False)

    def original() -> bool:
        return NativeTelemetry.enabled(telemetry)

    assert telemetry.enabled() is False
    assert original() is False
    rng = random.Random(15)
    answers = set()
    for _ in range(200):
        module, name, provider = rng.choice(_GLOBALS)
        monkeypatch.setattr(module, name, provider() if rng.random() < 0.4 else None)
        for _ in range(rng.randrange(1, 3)):
            assert telemetry.enabled() == original()
            answers.add(telemetry.enabled())
    assert answers == {True, False}
    # The app's own config still decides: with every signal off, a provider changes nothing.
    app2 = create_service_app(
        "ingest", data_dir=tmp_path / "2", bus_url=f"memory://{uuid.uuid4().hex}"
    )
    off = app2._native_telemetry  # type: ignore[attr-defined]
    off.config.update(tracing=False, metrics=False, logs=False)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", trace.NoOpTracerProvider())
    assert off.enabled() is False
    assert telemetry.enabled() is True
