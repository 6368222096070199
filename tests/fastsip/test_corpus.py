"""Every corpus message: valid ones parse to their golden fields and round-trip; invalid ones raise ParseError."""

from __future__ import annotations

import json

import pytest

from fastsip import errors
from fastsip._snapshot import snapshot

from .conftest import corpus_files

VALID = corpus_files("valid")
INVALID = corpus_files("invalid")


def test_corpus_is_large_enough() -> None:
    # The issue asks for at least 80 messages; both halves must be represented.
    assert len(VALID) + len(INVALID) >= 80
    assert len(INVALID) >= 20


@pytest.mark.parametrize("path", VALID, ids=[p.name for p in VALID])
def test_valid_message_matches_golden(impl, path) -> None:
    data = path.read_bytes()
    msg = impl.parse(data, max_size=max(65535, len(data)))
    msg.validate()
    golden = json.loads(path.with_suffix(".json").read_text())
    assert json.loads(json.dumps(snapshot(msg))) == golden
    # Byte-identical round trip (minus line breaks before the start line and bytes past Content-Length).
    out = bytes(msg)
    start = len(data) - len(data.lstrip(b"\r\n"))
    assert data[start:].startswith(out)
    assert out.endswith(msg.body)


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_message_is_rejected(impl, path) -> None:
    data = path.read_bytes()
    with pytest.raises(errors.ParseError) as info:
        impl.parse(data).validate()
    assert 0 <= info.value.offset <= max(len(data), 65535)
    assert info.value.status_hint in (400, 513)
