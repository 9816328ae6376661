"""What `moonlander run` logs at its default level."""

from __future__ import annotations

import logging

import pytest

from moonlander.cli.logs import configure_logging


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_client_libraries_are_quiet_but_their_failures_still_show(level: str) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(level)
        for noisy in ("httpx2", "aiohttp"):
            assert not logging.getLogger(noisy).isEnabledFor(logging.INFO)
            assert logging.getLogger(noisy).isEnabledFor(logging.ERROR)
        assert logging.getLogger("moonlander.controller").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:], level_ = saved
        root.setLevel(level_)
