"""Anthropic HH-RLHF: `{"chosen": transcript, "rejected": transcript}` with
transcripts in the `\\n\\nHuman: ...\\n\\nAssistant: ...` form.

The two transcripts of a pair usually share every turn but the last reply. Then
the pair is one conversation: its last assistant message is the chosen reply,
with the rejected one as its alternative and `preferred=0`. Where they part
earlier, both are kept as conversations of their own, linked by `pair_id`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from wildfeedback.errors import Location, RecordError
from wildfeedback.io.formats.base import RecordFormat, build, content_id, register, require
from wildfeedback.schema import Conversation

_SPEAKER = re.compile(r"\n\n(Human|Assistant):[ ]?")
_ROLE = {"Human": "user", "Assistant": "assistant"}


def parse_transcript(text: str, field: str) -> list[dict[str, Any]]:
    """`\\n\\nHuman: a\\n\\nAssistant: b` -> [{role: user, content: a}, {role: assistant, content: b}]."""
    parts = _SPEAKER.split(text)
    if parts[0].strip():
        raise RecordError(f"{field}: text before the first 'Human:' or 'Assistant:' turn: {parts[0][:60]!r}")
    if len(parts) < 3:
        raise RecordError(f"{field}: no '\\n\\nHuman:' or '\\n\\nAssistant:' turn found")
    return [
        {"role": _ROLE[speaker], "content": content, "index": index}
        for index, (speaker, content) in enumerate(zip(parts[1::2], parts[2::2], strict=True))
    ]


@register
class HHRLHF(RecordFormat):
    name = "hh-rlhf"
    description = 'Anthropic HH-RLHF: {"chosen": "\\n\\nHuman: ...", "rejected": ...}'

    def sniff(self, record: dict[str, Any]) -> bool:
        chosen = record.get("chosen")
        return isinstance(chosen, str) and isinstance(record.get("rejected"), str) and "\n\nHuman:" in chosen

    def convert(self, record: dict[str, Any], location: Location) -> Iterable[Conversation]:
        chosen = parse_transcript(require(record, "chosen", str), "chosen")
        rejected = parse_transcript(require(record, "rejected", str), "rejected")
        pair_id = content_id(record["chosen"], record["rejected"])
        shares_all_but_last = (
            len(chosen) == len(rejected)
            and chosen[-1]["role"] == rejected[-1]["role"] == "assistant"
            and all(c["role"] == r["role"] and c["content"] == r["content"] for c, r in zip(chosen[:-1], rejected[:-1], strict=True))
        )
        if shares_all_but_last:
            chosen[-1]["alternatives"] = [{"content": rejected[-1]["content"]}]
            chosen[-1]["preferred"] = 0
            yield build({"id": pair_id, "source": "hh-rlhf", "messages": chosen})
            return
        for side, messages in (("chosen", chosen), ("rejected", rejected)):
            yield build(
                {
                    "id": f"{pair_id}-{side}",
                    "source": "hh-rlhf",
                    "messages": messages,
                    "metadata": {"pair_id": pair_id, "side": side},
                }
            )
