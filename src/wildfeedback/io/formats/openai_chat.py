"""OpenAI chat JSONL: `{"messages": [{"role", "content"}], "id"?, "metadata"?}`.

The format of fine-tuning files and of most chat exports; content may be a
string or a list of text parts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wildfeedback.errors import Location, RecordError
from wildfeedback.io.formats.base import RecordFormat, build, content_id, jsonable, register, require, role_of, text_of
from wildfeedback.schema import Conversation

_MESSAGE_KEYS = ("role", "content", "name", "timestamp")


@register
class OpenAIChat(RecordFormat):
    name = "openai"
    description = 'OpenAI chat: {"messages": [{"role": ..., "content": ...}]}'

    def sniff(self, record: dict[str, Any]) -> bool:
        return isinstance(record.get("messages"), list) and "source" not in record

    def convert(self, record: dict[str, Any], location: Location) -> Iterable[Conversation]:
        raw_messages = require(record, "messages", list)
        messages = []
        for index, raw in enumerate(raw_messages):
            if not isinstance(raw, dict):
                raise RecordError(f"message {index}: must be an object, got {type(raw).__name__}")
            if "role" not in raw:
                raise RecordError(f"message {index}: has no 'role'")
            message: dict[str, Any] = {
                "role": role_of(raw["role"], index),
                "content": text_of(raw.get("content"), index),
                "index": index,
            }
            if raw.get("timestamp") is not None:
                message["timestamp"] = raw["timestamp"]
            extra = {k: v for k, v in raw.items() if k not in _MESSAGE_KEYS}
            if raw.get("name") is not None:
                extra["name"] = raw["name"]
            if extra:
                message["metadata"] = jsonable(extra)
            messages.append(message)
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise RecordError(f"field 'metadata' must be an object, got {type(metadata).__name__}")
        metadata = dict(metadata)
        metadata.update({k: v for k, v in record.items() if k not in ("id", "messages", "metadata")})
        conversation_id = record.get("id")
        yield build(
            {
                "id": str(conversation_id) if conversation_id is not None else content_id(raw_messages),
                "source": "openai",
                "messages": messages,
                "metadata": jsonable(metadata),
            }
        )
