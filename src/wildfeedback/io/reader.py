"""Read conversations from any supported log, streaming, with bad records named.

`read_conversations(inputs)` yields `Conversation`s and `Rejected`s in input
order. The container (JSONL, JSON array, Parquet, text) and the format
(ShareGPT, WildChat, ...) are found from the content of each file; `format=`
overrides the second. Policies that hold for every format live here: no
record may take more than `max_record_bytes` before it is parsed or nest more
than `MAX_DEPTH` levels, and no message may be longer than `max_message_chars`.
An empty message (blank or whitespace only) is kept, as the log has it, and
marked `metadata["empty"] = True`: real chat logs hold empty user turns and
empty replies, and a reply the user reacted to matters even when it is empty.
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
    DEFAULT_MAX_RECORD_BYTES,
    MAX_DEPTH,
    TRUNCATION_ERRORS,
    RawRecord,
    container_of,
    deeper_than,
    expand_inputs,
    parquet_metadata,
    peek,
    too_deep_reason,
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
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[Conversation | Rejected]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if format is not None and format not in REGISTRY:
        raise UnknownFormatError(f"unknown format {format!r}; known: {', '.join(sorted(REGISTRY))}")
    for path in expand_inputs(inputs):
        yield from read_file(path, format=format, max_message_chars=max_message_chars, max_record_bytes=max_record_bytes)


def read_file(
    path: Path,
    *,
    format: str | None = None,
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[Conversation | Rejected]:
    name = str(path)
    try:
        head = peek(path)
    except TRUNCATION_ERRORS as error:
        yield Rejected(Location(name), truncation_reason(error, records_before=False))
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
    if container == "parquet":  # rows come in batches that pyarrow has already read: no byte limit applies
        from wildfeedback.io.parquet import NATIVE_MARKER, decode_row  # pyarrow only when needed

        raw = CONTAINERS[container](path)
        if NATIVE_MARKER in parquet_metadata(path):
            raw = (decode_row(item) if isinstance(item, RawRecord) else item for item in raw)
    else:
        raw = CONTAINERS[container](path, max_record_bytes=max_record_bytes)
    yield from _convert(raw, chosen, max_message_chars)


def _checked(
    items: Iterator[Conversation | Rejected], fmt: FileFormat, location: Location, max_message_chars: int
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
        if _too_deep(item):
            yield Rejected(item.location, too_deep_reason(MAX_DEPTH), source)
            continue
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


def _too_deep(item: RawRecord) -> bool:
    """Whether a record nests deeper than MAX_DEPTH, checked before any converter or
    validator recurses into it. A record with no more brackets than the limit
    cannot be too deep: counting them in its bytes (in C) spares the walk."""
    if item.raw is not None and item.raw.count(b"[") + item.raw.count(b"{") <= MAX_DEPTH:
        return False
    return deeper_than(item.value, MAX_DEPTH)


def _policy_problem(conversation: Conversation, fmt: RecordFormat | FileFormat, max_message_chars: int) -> str | None:
    """Why the conversation must be rejected, or None; marks its empty messages on the way
    (unless `fmt` reads wildfeedback's own records, which come back as written)."""
    mark_empty = fmt.marks_empty_messages
    for message in conversation.messages:
        content = message.content
        if len(content) > max_message_chars:
            return (
                f"message {message.index} ({message.role}) is {len(content):,} characters long, "
                f"over the limit of {max_message_chars:,} (--max-message-chars)"
            )
        # `not content.strip()` without copying every message: strip() removes exactly what isspace() matches.
        if mark_empty and (not content or content.isspace()):
            message.metadata["empty"] = True
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
