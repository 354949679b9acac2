"""Conversations rendered into prompts as delimited data, never as instructions.

Every message goes inside `<message index=".." role="..">` tags (replies under
judgement in `<reply_a>`..., a user's preferences in `<preferences>`...). A user
who writes `</message>` in a turn must not be able to close the tag and speak to
the model as the prompt: the names of our delimiting tags inside content are
neutralised (the `<` of `<message` / `</message` becomes `‹`). Nothing else in
the text changes, so a quote the model copies from a turn is still found in the
original.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from wildfeedback.schema import Message

DELIMITERS = ("message", "reply_a", "reply_b", "preferences", "reasons", "request")
_TAG = re.compile(r"<(/?\s*(?:" + "|".join(DELIMITERS) + r"))", re.IGNORECASE)
ELISION = " [...] "


def neutralise(text: str) -> str:
    """`text` unable to open or close any of the tags prompts delimit data with."""
    return _TAG.sub(r"‹\1", text)


def as_data(text: str, max_chars: int = 0) -> str:
    """User content (a reply, a summary) ready to sit between delimiting tags."""
    return neutralise(shorten(text, max_chars))


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
