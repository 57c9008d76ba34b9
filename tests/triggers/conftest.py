from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog


@pytest.fixture
def trigger_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Log events of ``self.log`` (structlog in Airflow 3) at INFO, whatever level the session runs at."""
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**old)
