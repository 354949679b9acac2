"""Read conversations from any supported log, streaming, with bad records named.

`read_conversations(inputs)` yields `Conversation`s and `Rejected`s in input
order. The container (JSONL, JSON array, Parquet, text) and the format
(ShareGPT, WildChat, ...) are found from the content of each file; `format=`
overrides the second. Policies that hold for every format live here: messages
must not be empty (except where a corpus keeps empty turns on purpose) and no
message may be longer than `max_message_chars`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from wildfeedback.errors import Location, RecordError, Rejected, WildfeedbackError
from wildfeedback.io.formats import DETECTION_ORDER, REGISTRY, FileFormat, RecordFormat
from wildfeedback.io.sources import (
    CONTAINERS,
    TRUNCATION_ERRORS,
    RawRecord,
    container_of,
    expand_inputs,
    parquet_metadata,
    peek,
    truncation_reason,
)
from wildfeedback.schema import Conversation

DEFAULT_MAX_MESSAGE_CHARS = 1_000_000


class UnknownFormatError(WildfeedbackError, ValueError):
    pass


def read_conversations(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    format: str | None = None,
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
) -> Iterator[Conversation | Rejected]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if format is not None and format not in REGISTRY:
        raise UnknownFormatError(f"unknown format {format!r}; known: {', '.join(sorted(REGISTRY))}")
    for path in expand_inputs(inputs):
        yield from read_file(path, format=format, max_message_chars=max_message_chars)


def read_file(
    path: Path, *, format: str | None = None, max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS
) -> Iterator[Conversation | Rejected]:
    name = str(path)
    try:
        head = peek(path)
    except TRUNCATION_ERRORS as error:
        yield Rejected(Location(name), truncation_reason(error))
        return
    if not head.strip():
        yield Rejected(Location(name), "file is empty: no records")
        return

    chosen = REGISTRY[format] if format else None
    if chosen is None:
        chosen = _file_format(path, head)
    if isinstance(chosen, FileFormat):
        yield from _checked(chosen.read(path), chosen, Location(name), max_message_chars)
        return
    container = container_of(path, head)
    if container == "text":
        yield Rejected(Location(name), _unknown_text_reason(head))
        return
    raw = CONTAINERS[container](path)
    if container == "parquet":
        from wildfeedback.io.parquet import NATIVE_MARKER, decode_row  # pyarrow only when needed

        if NATIVE_MARKER in parquet_metadata(path):
            raw = (decode_row(item) if isinstance(item, RawRecord) else item for item in raw)
    yield from _convert(raw, chosen, max_message_chars)


def _checked(
    items: Iterator[Conversation | Rejected], fmt: Any, location: Location, max_message_chars: int
) -> Iterator[Conversation | Rejected]:
    """Apply the policies that hold for every format to a file format's output."""
    for item in items:
        if isinstance(item, Conversation):
            problem = _policy_problem(item, fmt, max_message_chars)
            if problem:
                item = Rejected(location, f"conversation {item.id!r}: {problem}", item.to_json().decode())
        yield item


def _file_format(path: Path, head: bytes) -> FileFormat | None:
    for fmt in REGISTRY.values():
        if isinstance(fmt, FileFormat) and fmt.sniff_file(path, head):
            return fmt
    return None


def _convert(
    raw: Iterator[RawRecord | Rejected], fmt: Any, max_message_chars: int
) -> Iterator[Conversation | Rejected]:
    """Apply a record format to raw records, detecting it from the first object if not given."""
    detected: RecordFormat | None = fmt
    for item in raw:
        if isinstance(item, Rejected):
            yield item
            continue
        source = item.raw if item.raw is not None else item.value
        if not isinstance(item.value, dict):
            yield Rejected(item.location, f"record is a JSON {_json_type(item.value)}, expected an object", source)
            continue
        if detected is None:
            detected = _detect(item.value)
            if detected is None:
                keys = ", ".join(sorted(item.value)[:12])
                yield Rejected(item.location, f"record matches no known format (keys: {keys}); pass --format", source)
                continue
        try:
            conversations = list(detected.convert(item.value, item.location))
        except RecordError as error:
            yield Rejected(item.location, f"{detected.name}: {error}", source)
            continue
        for conversation in conversations:
            problem = _policy_problem(conversation, detected, max_message_chars)
            yield Rejected(item.location, problem, source) if problem else conversation


def _detect(record: dict[str, Any]) -> RecordFormat | None:
    for name in DETECTION_ORDER:
        fmt = REGISTRY[name]
        if isinstance(fmt, RecordFormat) and fmt.sniff(record):
            return fmt
    return None


def _policy_problem(conversation: Conversation, fmt: Any, max_message_chars: int) -> str | None:
    allows_empty = bool(fmt is not None and fmt.allows_empty_messages)
    for message in conversation.messages:
        content = message.content
        if len(content) > max_message_chars:
            return (
                f"message {message.index} ({message.role}) is {len(content):,} characters long, "
                f"over the limit of {max_message_chars:,} (--max-message-chars)"
            )
        # `not content.strip()` without copying every message: strip() removes exactly what isspace() matches.
        if not allows_empty and (not content or content.isspace()):
            return f"message {message.index} ({message.role}) is empty"
    return None


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")


def _unknown_text_reason(head: bytes) -> str:
    first = head.lstrip().split(b"\n", 1)[0][:80]
    try:
        first.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8 and not a known format"
    known = ", ".join(sorted(REGISTRY))
    return f"content matches no known format (starts with {first!r}); known formats: {known}"
