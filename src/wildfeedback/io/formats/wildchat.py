"""WildChat / WildChat-1M, in the Hugging Face schema.

One record per conversation: `conversation_hash`, `model`, `timestamp`,
`conversation` (turns with role, content, timestamp, language, toxic, redacted,
...), `turn`, `language`, `toxic`, `redacted`, moderation results, and the
user's `hashed_ip`, which is the closest thing WildChat has to a user id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wildfeedback.errors import Location
from wildfeedback.io.formats.base import RecordFormat, build, chat_turns, jsonable, language_code, register, require
from wildfeedback.schema import Conversation

_TOP_LEVEL = ("conversation_hash", "conversation", "model", "timestamp", "language", "hashed_ip")


@register
class WildChat(RecordFormat):
    name = "wildchat"
    description = "WildChat / WildChat-1M (conversation_hash, conversation, ...)"

    def sniff(self, record: dict[str, Any]) -> bool:
        return "conversation_hash" in record and isinstance(record.get("conversation"), list)

    def convert(self, record: dict[str, Any], location: Location) -> Iterable[Conversation]:
        conversation_hash = require(record, "conversation_hash", str)
        turns = require(record, "conversation", list)
        metadata = jsonable({k: v for k, v in record.items() if k not in _TOP_LEVEL})
        if record.get("language") is not None:
            metadata["language_name"] = record["language"]
        yield build(
            {
                "id": conversation_hash,
                "source": "wildchat",
                "user_id": record.get("hashed_ip"),
                "model": record.get("model"),
                "language": language_code(record.get("language")),
                "created_at": record.get("timestamp"),
                "messages": chat_turns(turns, timestamp_key="timestamp"),
                "metadata": metadata,
            }
        )
