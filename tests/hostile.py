"""Shared assertion for the hostile-input suites (tests/test_hostile_*.py).

A case passes when calling it raises the expected error type, the message
matches every pattern (what was expected and what came), and the error was
raised by lstmjax itself, not from deep inside a dependency.
"""

import re
from pathlib import Path

import pytest

LSTMJAX = Path(__file__).resolve().parents[1] / "lstmjax"


def assert_clear(error, call, *patterns):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"message {message!r} does not match {pattern!r}"
    origin = Path(str(info.traceback[-1].path)).resolve()
    assert LSTMJAX in origin.parents, f"raised from {origin}, not from lstmjax: {message}"
    return message
