from __future__ import annotations

import os

import pytest
import structlog

# Tests never touch a real GPU or the network.
os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for this test process (see tests/pg.py)."""
    from tests.pg import PostgresServer

    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server):
    """A fresh database on the real server."""
    return pg_server.new_database()


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory):
    """The wheel `make wheel` builds, from this checkout (see tests/wheel.py)."""
    from tests.wheel import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))
