"""OpenAI chat JSONL: `{"messages": [{"role", "content"}], "id"?, "metadata"?}`.

The format of fine-tuning files and of most chat exports; content may be a
string or a list of text parts. Product feedback that exports put on a message
is kept as the schema's labels: `"thumbs": "up" | "down"` and a numeric
`"rating"`; a value of another shape stays in the message's metadata.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wildfeedback.errors import Location, RecordError
from wildfeedback.io.formats.base import RecordFormat, build, chat_turns, content_id, jsonable, register, require
from wildfeedback.schema import Conversation


@register
class OpenAIChat(RecordFormat):
    name = "openai"
    description = 'OpenAI chat: {"messages": [{"role": ..., "content": ...}]}'

    def sniff(self, record: dict[str, Any]) -> bool:
        return isinstance(record.get("messages"), list) and "source" not in record

    def convert(self, record: dict[str, Any], location: Location) -> Iterable[Conversation]:
        raw_messages = require(record, "messages", list)
        messages = [_feedback_labels(m) for m in chat_turns(raw_messages, timestamp_key="timestamp")]
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


def _feedback_labels(message: dict[str, Any]) -> dict[str, Any]:
    extra = message.get("metadata")
    if not extra:
        return message
    if extra.get("thumbs") in ("up", "down"):
        message["thumbs"] = extra.pop("thumbs")
    rating = extra.get("rating")
    if isinstance(rating, int | float) and not isinstance(rating, bool):
        message["rating"] = float(extra.pop("rating"))
    if not extra:
        del message["metadata"]
    return message
