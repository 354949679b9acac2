"""Any record survives JSONL and Parquet exactly (property-based), and the schema
says precisely what is wrong with a bad one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.conftest import split
from wildfeedback.io.reader import read_conversations
from wildfeedback.io.writers import open_writer
from wildfeedback.schema import ROLES, Conversation

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
text = st.text(max_size=40)
json_scalar = st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | text
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
json_object = st.dictionaries(text, json_value, max_size=3)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])
)
optional = lambda strategy: st.none() | strategy  # noqa: E731
finite = st.floats(allow_nan=False, allow_infinity=False)

alternatives = st.fixed_dictionaries(
    {"content": text},
    optional={"model": optional(text), "id": optional(text), "rating": optional(finite), "metadata": json_object},
)


@st.composite
def messages(draw, count: int) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    result = []
    for index in range(count):
        alts = draw(st.lists(alternatives, max_size=2))
        message = draw(
            st.fixed_dictionaries(
                {"role": st.sampled_from(ROLES), "content": text},
                optional={
                    "id": optional(text),
                    "parent_id": optional(text),
                    "timestamp": optional(moments),
                    "model": optional(text),
                    "rating": optional(finite),
                    "ratings": optional(st.lists(finite, max_size=4)),
                    "thumbs": optional(st.sampled_from(["up", "down"])),
                    "rank": optional(INT64),
                    "labels": json_object,
                    "metadata": json_object,
                },
            )
        )
        message.update(index=index, alternatives=alts)
        if alts and draw(st.booleans()):
            message["preferred"] = draw(st.integers(0, len(alts)))
        result.append(message)
    return result


@st.composite
def conversations(draw) -> Conversation:  # type: ignore[no-untyped-def]
    count = draw(st.integers(1, 4))
    events = draw(
        st.lists(
            st.fixed_dictionaries(
                {"kind": st.sampled_from(["copy", "regenerate", "dwell", "mouse_trace", "thumbs_up"])},
                optional={
                    "message_index": optional(st.integers(0, count - 1)),
                    "message_id": optional(text),
                    "value": json_value,
                    "timestamp": optional(moments),
                    "metadata": json_object,
                },
            ),
            max_size=3,
        )
    )
    record = draw(
        st.fixed_dictionaries(
            {"id": st.text(min_size=1, max_size=20), "source": st.text(min_size=1, max_size=10)},
            optional={
                "user_id": optional(text),
                "model": optional(text),
                "language": optional(st.sampled_from(["en", "fr", "zh"])),
                "created_at": optional(moments),
                "metadata": json_object,
            },
        )
    )
    record.update(messages=draw(messages(count)), events=events)
    return Conversation.model_validate(record)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(conversations(), min_size=1, max_size=5))
def test_round_trip_is_exact(tmp_path: Path, suffix: str, batch: list[Conversation]) -> None:
    path = tmp_path / f"records{suffix}"
    writer = open_writer(path)
    writer.write(batch)
    writer.close()
    back, rejected = split(read_conversations(path, format="wildfeedback"))
    assert rejected == []
    assert back == batch


def test_timestamps_are_kept_in_utc() -> None:
    conversation = Conversation.model_validate(
        {
            "id": "a",
            "source": "test",
            "created_at": "2024-05-01T12:00:00+02:00",
            "messages": [{"role": "user", "content": "hi", "index": 0, "timestamp": "2024-05-01T12:00:00"}],
        }
    )
    assert conversation.created_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert conversation.messages[0].timestamp == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"messages": [{"role": "bot", "content": "x", "index": 0}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": 3, "index": 0}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": "x", "index": 1}]}, "message at position 0 has index 1"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x", "index": 0, "preferred": 1}]}, "only 0 alternative"),
        ({"messages": [{"role": "user", "content": "x", "index": 0, "colour": "red"}]}, "messages.0.colour"),
        ({"messages": [{"role": "user", "content": "x", "index": 0}], "events": [{"kind": "copy", "message_index": 4}]}, "refers to message 4"),
        ({"messages": [{"role": "user", "content": "x", "index": 0}], "events": [{"kind": "teleport"}]}, "events.0.kind"),
    ],
)
def test_schema_names_what_is_wrong(record: dict, expected: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError, match=expected.replace(".", r"\.")):
        Conversation.model_validate({"id": "a", "source": "test", **record})
