"""Conversations rendered into prompts as delimited data, never as instructions.

Every message goes inside `<message index=".." role="..">` tags. A user who
writes `</message>` in a turn must not be able to close the tag and speak to the
model as the prompt: the tag names inside content are neutralised (the `<` of
`<message` / `</message` becomes `‹`). Nothing else in the text changes, so a
quote the model copies from a turn is still found in the original.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from wildfeedback.schema import Message

_TAG = re.compile(r"<(/?\s*message)", re.IGNORECASE)
ELISION = " [...] "


def neutralise(text: str) -> str:
    return _TAG.sub(r"‹\1", text)


def shorten(text: str, max_chars: int) -> str:
    """`text` cut in the middle to at most about `max_chars`, keeping its start and end."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    head = max_chars * 2 // 3
    tail = max_chars - head
    return text[:head] + ELISION + text[-tail:]


def render_message(message: Message, max_chars: int = 0) -> str:
    body = neutralise(shorten(message.content, max_chars))
    return f'<message index="{message.index}" role="{message.role}">\n{body}\n</message>'


def render_messages(messages: Sequence[Message], max_chars: int = 0) -> str:
    """The messages in order, each tagged; `max_chars` (0: no limit) caps each message."""
    return "\n".join(render_message(m, max_chars) for m in messages)
