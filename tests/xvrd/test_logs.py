"""Logging: JSON off a terminal, and always to the stderr of the moment."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from xvrd.logs import configure_logging


def test_json_lines_go_to_whatever_stderr_is_now(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging("json", "info")
    first, second = io.StringIO(), io.StringIO()
    log = structlog.get_logger("test")
    monkeypatch.setattr("sys.stderr", first)
    log.info("one", n=1)
    monkeypatch.setattr("sys.stderr", second)
    log.info("two", n=2)
    log.debug("hidden")
    assert json.loads(first.getvalue())["event"] == "one"
    line = json.loads(second.getvalue())
    assert line["event"] == "two"
    assert line["n"] == 2
    assert line["level"] == "info"
    structlog.reset_defaults()
