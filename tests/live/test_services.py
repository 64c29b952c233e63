"""Without PostgreSQL or Redis the live test says which one is missing and how to start it."""

from __future__ import annotations

import pytest

from tests.airflow_harness.harness import free_port
from tests.live import services


def test_unreachable_services_are_named_with_the_command_that_starts_them(monkeypatch):
    closed = free_port()  # nothing listens there
    monkeypatch.setattr(services, "PG_PORT", closed)
    monkeypatch.setattr(services, "REDIS_PORT", closed)
    with pytest.raises(services.ServiceUnavailable) as missing:
        services.check_services()
    message = str(missing.value)
    assert f"PostgreSQL on 127.0.0.1:{closed}" in message and services.START_POSTGRES in message
    assert f"Redis on 127.0.0.1:{closed}" in message and services.START_REDIS in message
