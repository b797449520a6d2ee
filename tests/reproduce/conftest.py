"""``autorec.cli.main`` points the ``autorec`` logger at the stderr that pytest captured for
that test, which is closed afterwards; each test here starts from a plain logger instead."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _plain_autorec_logger():
    logger = logging.getLogger("autorec")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:], logger.propagate = [], True
    yield
    logger.handlers[:], logger.level, logger.propagate = saved
