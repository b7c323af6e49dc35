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
