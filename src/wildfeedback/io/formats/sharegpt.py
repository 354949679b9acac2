"""ShareGPT: `{"id", "conversations": [{"from": "human"|"gpt"|"system", "value"}]}`.

The real ShareGPT V3 dump names assistants `gpt`, `chatgpt`, `bing` or `bard`;
all are assistant turns here, with the original name kept in metadata.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wildfeedback.errors import Location, RecordError
from wildfeedback.io.formats.base import RecordFormat, build, content_id, jsonable, register, require, role_of, text_of
from wildfeedback.schema import Conversation

_PLAIN_NAMES = {"human", "gpt", "system", "user"}


@register
class ShareGPT(RecordFormat):
    name = "sharegpt"
    description = 'ShareGPT: {"conversations": [{"from": "human"|"gpt", "value": ...}]}'

    def sniff(self, record: dict[str, Any]) -> bool:
        turns = record.get("conversations")
        return isinstance(turns, list) and (not turns or (isinstance(turns[0], dict) and "from" in turns[0]))

    def convert(self, record: dict[str, Any], location: Location) -> Iterable[Conversation]:
        turns = require(record, "conversations", list)
        messages = []
        for index, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise RecordError(f"message {index}: must be an object, got {type(turn).__name__}")
            speaker = turn.get("from")
            message: dict[str, Any] = {
                "role": role_of(speaker, index),
                "content": text_of(turn.get("value"), index, field="value"),
                "index": index,
            }
            # Most turns carry only from/value under a plain name: no metadata to build.
            if len(turn) > 2 or speaker not in _PLAIN_NAMES:
                extra = {k: v for k, v in turn.items() if k not in ("from", "value")}
                if speaker not in _PLAIN_NAMES:
                    extra["from"] = speaker
                if extra:
                    message["metadata"] = jsonable(extra)
            messages.append(message)
        metadata = jsonable({k: v for k, v in record.items() if k not in ("id", "conversations")})
        conversation_id = record.get("id")
        yield build(
            {
                "id": str(conversation_id) if conversation_id is not None else content_id(turns),
                "source": "sharegpt",
                "messages": messages,
                "metadata": metadata,
            }
        )
