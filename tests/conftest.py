"""Shared test helpers: where the real data lives, and a skip when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from wildfeedback.errors import Rejected
from wildfeedback.schema import Conversation

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or a skip saying what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present: {path} (tests read ../shared/data beside the repository)")
    return path


def split(items) -> tuple[list[Conversation], list[Rejected]]:  # type: ignore[no-untyped-def]
    conversations, rejected = [], []
    for item in items:
        (rejected if isinstance(item, Rejected) else conversations).append(item)
    return conversations, rejected


def write_jsonl(path: Path, lines: list[bytes | str]) -> Path:
    path.write_bytes(b"".join((line.encode() if isinstance(line, str) else line) + b"\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def running_server():
    """The scripted OpenAI-compatible server (tests/llm_server), one process per test module."""
    from llm_server.harness import ScriptedServer

    server = ScriptedServer()
    yield server
    server.stop()


@pytest.fixture
def server(running_server):  # type: ignore[no-untyped-def]
    """The scripted server with no scripts or counts left from the test before."""
    running_server.reset()
    return running_server
