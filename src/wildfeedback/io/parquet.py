"""wildfeedback records as Parquet columns, and back.

Typed fields get typed columns (strings, numbers, UTC timestamps, nested lists
of structs), so the file is useful to any Parquet reader. Free-form fields
(`metadata`, `labels`, an event's `value`) hold arbitrary JSON, which no fixed
Arrow type can, so they are stored as JSON text and decoded on reading. The
file's schema metadata carries a marker, which is how a reader knows to decode.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from wildfeedback.errors import Rejected
from wildfeedback.io.sources import RawRecord
from wildfeedback.schema import SCHEMA_VERSION, Conversation

NATIVE_MARKER = b"wildfeedback.schema"

_TIME = pa.timestamp("us", tz="UTC")
_JSON = pa.large_string()

ALTERNATIVE = pa.struct(
    [
        ("content", pa.large_string()),
        ("model", pa.string()),
        ("id", pa.string()),
        ("rating", pa.float64()),
        ("metadata", _JSON),
    ]
)
MESSAGE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.large_string()),
        ("index", pa.int64()),
        ("id", pa.string()),
        ("parent_id", pa.string()),
        ("timestamp", _TIME),
        ("model", pa.string()),
        ("rating", pa.float64()),
        ("ratings", pa.list_(pa.float64())),
        ("thumbs", pa.string()),
        ("rank", pa.int64()),
        ("alternatives", pa.list_(ALTERNATIVE)),
        ("preferred", pa.int64()),
        ("labels", _JSON),
        ("metadata", _JSON),
    ]
)
EVENT = pa.struct(
    [
        ("kind", pa.string()),
        ("message_index", pa.int64()),
        ("message_id", pa.string()),
        ("value", _JSON),
        ("timestamp", _TIME),
        ("metadata", _JSON),
    ]
)
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("user_id", pa.string()),
        ("model", pa.string()),
        ("language", pa.string()),
        ("created_at", _TIME),
        ("messages", pa.list_(MESSAGE)),
        ("events", pa.list_(EVENT)),
        ("metadata", _JSON),
    ],
    metadata={NATIVE_MARKER: SCHEMA_VERSION.encode()},
)

# Which nested fields hold JSON text, by level.
_MESSAGE_JSON_FIELDS = ("labels", "metadata")
_EVENT_JSON_FIELDS = ("value", "metadata")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def to_row(conversation: Conversation) -> dict[str, Any]:
    row = conversation.model_dump()
    row["metadata"] = _dumps(row["metadata"])
    for message in row["messages"]:
        for key in _MESSAGE_JSON_FIELDS:
            message[key] = _dumps(message[key])
        for alternative in message["alternatives"]:
            alternative["metadata"] = _dumps(alternative["metadata"])
    for event in row["events"]:
        for key in _EVENT_JSON_FIELDS:
            event[key] = _dumps(event[key])
    return row


def to_table(conversations: list[Conversation]) -> pa.Table:
    return pa.Table.from_pylist([to_row(c) for c in conversations], schema=SCHEMA)


def from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `to_row`: a dict that `Conversation.model_validate` accepts."""
    row = dict(row)
    row["metadata"] = orjson.loads(row["metadata"])
    for message in row["messages"]:
        for key in _MESSAGE_JSON_FIELDS:
            message[key] = orjson.loads(message[key])
        for alternative in message["alternatives"]:
            alternative["metadata"] = orjson.loads(alternative["metadata"])
    for event in row["events"]:
        for key in _EVENT_JSON_FIELDS:
            event[key] = orjson.loads(event[key])
    return row


def decode_row(item: RawRecord) -> RawRecord | Rejected:
    try:
        return RawRecord(item.location, from_row(item.value))
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        return Rejected(item.location, f"wildfeedback Parquet row has a damaged JSON column: {error}", str(item.value))
