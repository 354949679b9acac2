"""What a log format is, and the helpers every format shares.

Two kinds of format:
- a `RecordFormat` turns one JSON object (a JSONL line, a JSON array item, a
  Parquet row) into conversations; the container is found separately;
- a `FileFormat` reads a whole file of its own layout (USS dialogues, the IFLLM
  query-log CSV) and yields conversations or rejections itself.

Formats are registered by name, so `--format NAME` and detection from content
work the same way for every one of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError

from wildfeedback.errors import Location, RecordError, Rejected, describe_validation_error
from wildfeedback.schema import Conversation


class RecordFormat:
    name: ClassVar[str]
    description: ClassVar[str]
    #: The reader marks an empty message `metadata["empty"] = True` (and keeps it);
    #: wildfeedback's own records are read back exactly as they were written.
    marks_empty_messages: ClassVar[bool] = True

    def sniff(self, record: dict[str, Any]) -> bool:
        raise NotImplementedError

    def convert(self, record: dict[str, Any], location: Location) -> Iterable[Conversation]:
        raise NotImplementedError


class FileFormat:
    name: ClassVar[str]
    description: ClassVar[str]
    marks_empty_messages: ClassVar[bool] = True

    def sniff_file(self, path: Path, head: bytes) -> bool:
        raise NotImplementedError

    def read(self, path: Path) -> Iterator[Conversation | Rejected]:
        raise NotImplementedError


Format = RecordFormat | FileFormat
REGISTRY: dict[str, Format] = {}


def register(cls: type[RecordFormat] | type[FileFormat]) -> type:
    REGISTRY[cls.name] = cls()
    return cls


# -- helpers shared by the formats -------------------------------------------

ROLE_ALIASES: dict[str, str] = {
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}


def role_of(raw: Any, position: int) -> str:
    """The schema role for a source's role name, or a precise error."""
    role = ROLE_ALIASES.get(raw) if isinstance(raw, str) else None  # the common case, exact
    if role is not None:
        return role
    if not isinstance(raw, str):
        raise RecordError(f"message {position}: role must be a string, got {type(raw).__name__}")
    role = ROLE_ALIASES.get(raw.strip().lower())
    if role is None:
        known = ", ".join(sorted(ROLE_ALIASES))
        raise RecordError(f"message {position}: unknown role {raw!r} (known: {known})")
    return role


def text_of(raw: Any, position: int, field: str = "content") -> str:
    """Message text: a string, or OpenAI-style content parts of type text."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and all(isinstance(p, dict) for p in raw):
        texts = [p.get("text") for p in raw if p.get("type") in ("text", "input_text", "output_text")]
        if len(texts) == len(raw) and all(isinstance(t, str) for t in texts):
            return "".join(texts)
        kinds = sorted({str(p.get("type")) for p in raw})
        raise RecordError(f"message {position}: {field} has non-text parts ({', '.join(kinds)})")
    raise RecordError(f"message {position}: {field} must be a string, got {type(raw).__name__}")


def require(record: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str = "record") -> Any:
    if key not in record:
        raise RecordError(f"{what} has no {key!r} field")
    value = record[key]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RecordError(f"{what} field {key!r} must be {expected}, got {type(value).__name__}")
    return value


def content_id(*parts: Any) -> str:
    """A stable id from content, for sources that give none."""
    return hashlib.blake2b(orjson.dumps(parts, default=str), digest_size=10).hexdigest()


def jsonable(value: Any) -> Any:
    """Metadata as plain JSON: dates as ISO strings, bytes as text, tuples as lists."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def build(record: dict[str, Any]) -> Conversation:
    """Validate a conversation dict, turning schema errors into one precise line."""
    if not record.get("messages"):
        raise RecordError("conversation has no messages")
    try:
        return Conversation.model_validate(record)
    except ValidationError as error:
        raise RecordError(describe_validation_error(error)) from None


def chat_turns(turns: list[Any], *, timestamp_key: str | None = None) -> list[dict[str, Any]]:
    """Messages from a `[{"role", "content", ...}]` list; other keys go to message metadata."""
    messages = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordError(f"message {index}: must be an object, got {type(turn).__name__}")
        if "role" not in turn:
            raise RecordError(f"message {index}: has no 'role'")
        message: dict[str, Any] = {
            "role": role_of(turn["role"], index),
            "content": text_of(turn.get("content"), index),
            "index": index,
        }
        skip = {"role", "content"}
        if timestamp_key and turn.get(timestamp_key) is not None:
            message["timestamp"] = turn[timestamp_key]
            skip.add(timestamp_key)
        extra = {k: v for k, v in turn.items() if k not in skip}
        if extra:
            message["metadata"] = jsonable(extra)
        messages.append(message)
    return messages


def language_code(name: Any) -> str | None:
    """'English' or 'en' -> 'en'; None where the source gives no usable language."""
    if not isinstance(name, str) or not name.strip():
        return None
    from wildfeedback.languages import to_code

    return to_code(name)
