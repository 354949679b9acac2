"""Each log format on records shaped exactly like the public datasets' own, format
detection from content, containers, compression, directories and globs."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.conftest import split, write_jsonl
from wildfeedback.io.reader import UnknownFormatError, read_conversations
from wildfeedback.io.sources import InputError

MODERATION = {"categories": {"harassment": False}, "category_scores": {"harassment": 0.001}, "flagged": False}

WILDCHAT = {
    "conversation_hash": "c9ec5b440fbdd2a269333dd241f32f64",
    "model": "gpt-4-0314",
    "timestamp": "2023-04-09T00:02:53+00:00",
    "conversation": [
        {
            "content": "Hey there! Are you familiar with reality shifting?",
            "country": "United States",
            "hashed_ip": "0d4f2b",
            "header": {"accept-language": "en-US,en;q=0.9", "user-agent": "Mozilla/5.0"},
            "language": "English",
            "redacted": False,
            "role": "user",
            "state": "Texas",
            "timestamp": None,
            "toxic": False,
            "turn_identifier": 101,
        },
        {
            "content": "Yes, I am familiar with reality shifting.",
            "country": None,
            "hashed_ip": None,
            "header": None,
            "language": "English",
            "redacted": False,
            "role": "assistant",
            "state": None,
            "timestamp": "2023-04-09T00:02:53+00:00",
            "toxic": False,
            "turn_identifier": 101,
        },
    ],
    "turn": 1,
    "language": "English",
    "openai_moderation": [MODERATION, MODERATION],
    "detoxify_moderation": [{"toxicity": 0.0005}, {"toxicity": 0.0004}],
    "toxic": False,
    "redacted": False,
    "state": "Texas",
    "country": "United States",
    "hashed_ip": "0d4f2b",
    "header": {"accept-language": "en-US,en;q=0.9", "user-agent": "Mozilla/5.0"},
}

LMSYS = {
    "conversation_id": "33f01939a744455c869cb234afca47f1",
    "model": "wizardlm-13b",
    "conversation": [
        {"content": "Beside OFAC's selective sanction, what else?", "role": "user"},
        {"content": "There are several other types of sanctions.", "role": "assistant"},
    ],
    "turn": 1,
    "language": "English",
    "openai_moderation": [MODERATION, MODERATION],
    "redacted": True,
}

OPENAI = {
    "id": "chat-1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Shorter "}, {"type": "text", "text": "please"}]},
        {"role": "assistant", "content": "OK.", "name": "helper"},
    ],
    "metadata": {"thread": 7},
}

SHAREGPT = {"id": "QWJhYvA_0", "conversations": [{"from": "human", "value": "hi"}, {"from": "bard", "value": "hello"}]}


def one(path: Path, **kwargs):  # type: ignore[no-untyped-def]
    conversations, rejected = split(read_conversations(path, **kwargs))
    assert rejected == [], [r.describe() for r in rejected]
    (conversation,) = conversations
    return conversation


def test_wildchat(tmp_path: Path) -> None:
    c = one(write_jsonl(tmp_path / "wildchat.jsonl", [orjson.dumps(WILDCHAT)]))
    assert (c.id, c.source, c.model, c.language, c.user_id) == (
        "c9ec5b440fbdd2a269333dd241f32f64", "wildchat", "gpt-4-0314", "en", "0d4f2b",
    )
    assert c.created_at == datetime(2023, 4, 9, 0, 2, 53, tzinfo=UTC)
    assert [m.role for m in c.messages] == ["user", "assistant"]
    assert c.messages[1].timestamp == datetime(2023, 4, 9, 0, 2, 53, tzinfo=UTC)
    assert c.messages[0].metadata["turn_identifier"] == 101 and c.messages[0].metadata["toxic"] is False
    assert c.metadata["openai_moderation"][0]["flagged"] is False
    assert c.metadata["language_name"] == "English" and c.metadata["turn"] == 1


def test_wildchat_from_parquet_with_native_timestamps(tmp_path: Path) -> None:
    """The Hugging Face Parquet files hold real timestamps, not strings."""
    row = dict(WILDCHAT, timestamp=datetime(2023, 4, 9, 0, 2, 53, tzinfo=UTC))
    row["conversation"] = [dict(turn, timestamp=datetime(2023, 4, 9, tzinfo=UTC)) for turn in row["conversation"]]
    path = tmp_path / "train-00000-of-00014.parquet"
    pq.write_table(pa.Table.from_pylist([row, dict(row, conversation_hash="second")]), path)
    conversations, rejected = split(read_conversations(path))
    assert rejected == []
    assert [c.id for c in conversations] == ["c9ec5b440fbdd2a269333dd241f32f64", "second"]
    assert conversations[0].created_at == datetime(2023, 4, 9, 0, 2, 53, tzinfo=UTC)


def test_lmsys(tmp_path: Path) -> None:
    c = one(write_jsonl(tmp_path / "lmsys.jsonl", [orjson.dumps(LMSYS)]))
    assert (c.id, c.source, c.model, c.language) == ("33f01939a744455c869cb234afca47f1", "lmsys", "wizardlm-13b", "en")
    assert c.metadata["redacted"] is True and len(c.metadata["openai_moderation"]) == 2


def test_openai_chat(tmp_path: Path) -> None:
    c = one(write_jsonl(tmp_path / "chat.jsonl", [orjson.dumps(OPENAI)]))
    assert (c.id, c.source) == ("chat-1", "openai")
    assert [m.content for m in c.messages] == ["Be brief.", "Shorter please", "OK."]
    assert c.messages[2].metadata == {"name": "helper"}
    assert c.metadata == {"thread": 7}


def test_openai_chat_without_an_id_gets_a_stable_one(tmp_path: Path) -> None:
    record = {"messages": OPENAI["messages"]}
    first = one(write_jsonl(tmp_path / "a.jsonl", [orjson.dumps(record)]))
    second = one(write_jsonl(tmp_path / "b.jsonl", [orjson.dumps(record)]))
    assert first.id == second.id and len(first.id) == 20


def test_sharegpt_assistant_names(tmp_path: Path) -> None:
    c = one(write_jsonl(tmp_path / "sg.jsonl", [orjson.dumps(SHAREGPT)]))
    assert [m.role for m in c.messages] == ["user", "assistant"]
    assert c.messages[1].metadata == {"from": "bard"}


@pytest.mark.parametrize("container", ["jsonl", "json-array", "json-document", "gz", "zst", "parquet"])
def test_containers_are_found_from_content_not_name(tmp_path: Path, container: str) -> None:
    records = [dict(WILDCHAT, conversation_hash=str(i)) for i in range(3)]
    path = tmp_path / "data.json"  # the name says nothing reliable
    if container == "jsonl":
        write_jsonl(path, [orjson.dumps(r) for r in records])
    elif container == "json-array":
        path.write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2))
    elif container == "json-document":
        path.write_bytes(orjson.dumps(WILDCHAT, option=orjson.OPT_INDENT_2))
        records = [WILDCHAT]
    elif container == "gz":
        path = tmp_path / "data.jsonl.gz"
        path.write_bytes(gzip.compress(b"\n".join(orjson.dumps(r) for r in records)))
    elif container == "zst":
        path = tmp_path / "data.jsonl.zst"
        path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(orjson.dumps(r) for r in records)))
    else:
        path = tmp_path / "data.parquet"
        records = [LMSYS, dict(LMSYS, conversation_id="b")]
        pq.write_table(pa.Table.from_pylist(records), path)
    conversations, rejected = split(read_conversations(path))
    assert rejected == []
    assert len(conversations) == len(records)


def test_detection_is_per_file_and_format_can_be_forced(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [orjson.dumps(WILDCHAT)])
    write_jsonl(tmp_path / "b.jsonl", [orjson.dumps(LMSYS)])
    conversations, _ = split(read_conversations(tmp_path))
    assert [c.source for c in conversations] == ["wildchat", "lmsys"]
    # Forcing a format that does not fit gives the precise reason per record.
    _, rejected = split(read_conversations(tmp_path / "b.jsonl", format="sharegpt"))
    assert rejected[0].reason == "sharegpt: record has no 'conversations' field"
    with pytest.raises(UnknownFormatError, match="unknown format 'shargpt'"):
        list(read_conversations(tmp_path, format="shargpt"))


def test_globs_and_directories(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "x.jsonl", [orjson.dumps(SHAREGPT)])
    write_jsonl(tmp_path / "y.jsonl", [orjson.dumps(dict(SHAREGPT, id="2"))])
    (tmp_path / "README").write_text("not data")
    assert len(split(read_conversations(tmp_path))[0]) == 2
    assert len(split(read_conversations(str(tmp_path / "**" / "*.jsonl")))[0]) == 2
    with pytest.raises(InputError, match="pattern matches no file"):
        list(read_conversations(str(tmp_path / "*.parquet")))
    with pytest.raises(InputError, match="no such file or directory"):
        list(read_conversations(tmp_path / "missing.jsonl"))
