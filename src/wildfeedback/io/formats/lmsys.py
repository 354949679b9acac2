"""LMSYS-Chat-1M: `conversation_id`, `model`, `conversation` ([{role, content}]),
`turn`, `language`, `openai_moderation`, `redacted`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wildfeedback.errors import Location
from wildfeedback.io.formats.base import RecordFormat, build, chat_turns, jsonable, language_code, register, require
from wildfeedback.schema import Conversation

_TOP_LEVEL = ("conversation_id", "conversation", "model", "language")


@register
class LMSYS(RecordFormat):
    name = "lmsys"
    description = "LMSYS-Chat-1M (conversation_id, conversation, openai_moderation, ...)"

    def sniff(self, record: dict[str, Any]) -> bool:
        return "conversation_id" in record and isinstance(record.get("conversation"), list)

    def convert(self, record: dict[str, Any], location: Location) -> Iterable[Conversation]:
        conversation_id = require(record, "conversation_id", (str, int))
        turns = require(record, "conversation", list)
        metadata = jsonable({k: v for k, v in record.items() if k not in _TOP_LEVEL})
        if record.get("language") is not None:
            metadata["language_name"] = record["language"]
        yield build(
            {
                "id": str(conversation_id),
                "source": "lmsys",
                "model": record.get("model"),
                "language": language_code(record.get("language")),
                "messages": chat_turns(turns),
                "metadata": metadata,
            }
        )
