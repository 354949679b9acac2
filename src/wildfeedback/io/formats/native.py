"""wildfeedback's own records, as its JSONL and Parquet writers store them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wildfeedback.errors import Location
from wildfeedback.io.formats.base import RecordFormat, build, register
from wildfeedback.schema import Conversation


@register
class Native(RecordFormat):
    name = "wildfeedback"
    description = "wildfeedback's own records (what `ingest` writes)"
    marks_empty_messages = False  # whatever was accepted once is read back exactly as it was

    def sniff(self, record: dict[str, Any]) -> bool:
        messages = record.get("messages")
        return (
            "source" in record
            and isinstance(messages, list)
            and bool(messages)
            and isinstance(messages[0], dict)
            and "index" in messages[0]
        )

    def convert(self, record: dict[str, Any], location: Location) -> Iterable[Conversation]:
        yield build(record)
