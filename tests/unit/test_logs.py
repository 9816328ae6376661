"""What `moonlander run` logs at its default level."""

from __future__ import annotations

import logging

import pytest

from moonlander.cli.logs import configure_logging


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_no_line_per_watch_event_but_handler_failures_still_show(level: str) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(level)
        kopf_objects = logging.getLogger("kopf.objects")
        assert not kopf_objects.isEnabledFor(logging.INFO)  # "Handler ... succeeded"
        assert kopf_objects.isEnabledFor(logging.ERROR)  # a handler that failed
        assert logging.getLogger("moonlander.controller").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:], level_ = saved
        root.setLevel(level_)
