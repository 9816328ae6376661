"""What `moonlander run` logs at its default level, and how its JSON lines are shaped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from moonlander.cli.logs import JsonFormatter, configure_logging, fields


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


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("moonlander.controller.loop")
    return logger.makeRecord(logger.name, logging.DEBUG, __file__, 1, msg, args, None, extra=extra)


def test_json_lines_carry_the_extra_fields_as_keys() -> None:
    record = _record(
        "%s: %s in %.3fs",
        "ns/l",
        "Synced",
        0.0123,
        landing="l",
        namespace="ns",
        reason="Synced",
        duration_seconds=0.0123,
        target_cluster="remote",
        ready=True,
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "ns/l: Synced in 0.012s"
    assert entry["landing"] == "l" and entry["namespace"] == "ns"
    assert entry["reason"] == "Synced" and entry["target_cluster"] == "remote"
    assert entry["duration_seconds"] == 0.0123 and entry["ready"] is True
    assert {"ts", "level", "logger"} <= entry.keys()


def test_extra_fields_never_replace_the_envelope_and_odd_values_become_strings() -> None:
    record = _record("m", ts="x", level="x", path=Path("/a"))
    entry = json.loads(JsonFormatter().format(record))
    assert entry["ts"] != "x" and entry["level"] == "debug"
    assert entry["path"] == "/a"
    assert fields(_record("plain")) == {}


def test_text_lines_stay_the_message_alone() -> None:
    """Text lines are parsed by people and tools (the e2e suite's log scans): no fields
    appended after the message."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("DEBUG", "text")
        line = root.handlers[0].format(_record("ns/l: reconciling", landing="l"))
        assert line.endswith("moonlander.controller.loop: ns/l: reconciling")
    finally:
        root.handlers[:], level_ = saved
        root.setLevel(level_)
