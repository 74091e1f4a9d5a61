"""The fast CLI's JSON (client/lite.py: CPython's C scanner and string encoder without the json
package) reads and writes what json does."""

from __future__ import annotations

import json

import pytest

from stapes.client.lite import dumps, loads

DOCUMENTS = [
    '{"type": "sync", "status_code": 200, "metadata": [{"name": "c1", "config": {}}]}',
    "  [1, -2, 3.5, -1e-3, 1E+20, true, false, null]\n",
    '"caf\\u00e9 \\ud83d\\ude00 \\"quoted\\" \\\\ \\n"',
    '{"nested": {"a": {"b": [[], {}, [{}]]}}, "empty": ""}',
    '"é plain utf-8 ✓"',
    "12345678901234567890123",
    "-Infinity",
    "NaN",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_reads_what_json_reads(text: str) -> None:
    expected = json.loads(text)
    got = loads(text.encode())
    assert json.dumps(got) == json.dumps(expected)


@pytest.mark.parametrize("text", ["", "   ", "{", "{} {}", "[1,]", "nope", '{"a" 1}', "'x'"])
def test_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(ValueError, match=r"\w"):
        loads(text.encode())


VALUES: list[object] = [
    {"command": ["sh", "-c", "echo 'a\"b' \\ \n\t"], "environment": {"TERM": "xterm"}},
    {"interactive": True, "wait-for-websocket": False, "width": 80, "height": None},
    {"signal": 15, "ratio": 0.5, "big": 10**30, "neg": -1.25e-7, "text": "é✓\U0001f600"},
    [],
    {},
    ("a", 1),
]


@pytest.mark.parametrize("value", VALUES)
def test_writes_what_json_writes(value: object) -> None:
    assert dumps(value) == json.dumps(value)
    assert loads(dumps(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize("value", [{1: "int key"}, {"x": object()}, b"bytes", float("nan")])
def test_refuses_values_it_cannot_write(value: object) -> None:
    with pytest.raises(TypeError):
        dumps(value)
