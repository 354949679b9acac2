"""Hand-made broken files: each stops a `fail` run with file, line or record and
the reason; under `skip` each is set aside in the errors file and counted."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from tests.conftest import split, write_jsonl
from wildfeedback.errors import BadRecordError
from wildfeedback.io.ingest import ingest
from wildfeedback.io.reader import read_conversations

GOOD = '{"id": "g%d", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}'


def sharegpt_file(tmp_path: Path, bad_line: bytes | str, name: str = "logs.jsonl") -> Path:
    """Two good records, the bad one on line 3, one more good record."""
    return write_jsonl(tmp_path / name, [GOOD % 1, GOOD % 2, bad_line, GOOD % 4])


CASES = {
    "invalid JSON": ('{"id": "x", "conversations": [', "line 3: invalid JSON"),
    "wrong type": ('{"id": "x", "conversations": "hello"}', "line 3: sharegpt: record field 'conversations' must be list, got str"),
    "wrong type in a message": (
        '{"id": "x", "conversations": [{"from": "human", "value": 42}]}',
        "line 3: sharegpt: message 0: value must be a string, got int",
    ),
    "unknown role": (
        '{"id": "x", "conversations": [{"from": "wizard", "value": "hi"}]}',
        "line 3: sharegpt: message 0: unknown role 'wizard'",
    ),
    "no messages": ('{"id": "x", "conversations": []}', "line 3: sharegpt: conversation has no messages"),
    "a lone surrogate": (
        '{"id": "x", "conversations": [{"from": "human", "value": "caf\\ud800"}]}',
        "line 3: invalid JSON: no low surrogate in string",
    ),
    "non-UTF-8 bytes": (
        b'{"id": "x", "conversations": [{"from": "human", "value": "caf\xe9"}]}',
        "line 3: not valid UTF-8: byte 0xe9 at offset",
    ),
    "not an object": ("[1, 2, 3]", "line 3: record is a JSON array, expected an object"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fail_mode_names_file_line_and_reason(tmp_path: Path, case: str) -> None:
    bad, expected = CASES[case]
    path = sharegpt_file(tmp_path, bad)
    output = tmp_path / "out.jsonl"
    with pytest.raises(BadRecordError) as stopped:
        ingest([path], output)
    assert str(stopped.value).startswith(f"{path}, {expected}")
    assert not output.exists()  # a stopped run leaves no output that looks complete


@pytest.mark.parametrize("case", sorted(CASES))
def test_skip_mode_sets_the_record_aside_with_its_reason(tmp_path: Path, case: str) -> None:
    bad, expected = CASES[case]
    path = sharegpt_file(tmp_path, bad)
    output = tmp_path / "out.jsonl"
    report = ingest([path], output, on_error="skip")
    assert (report.read, report.written, report.rejected) == (3, 3, 1)
    assert [orjson.loads(line)["id"] for line in output.read_bytes().splitlines()] == ["g1", "g2", "g4"]
    (error,) = [orjson.loads(line) for line in (tmp_path / "out.errors.jsonl").read_bytes().splitlines()]
    assert error["path"] == str(path) and error["line"] == 3
    assert f"{path}, line 3: {error['reason']}".startswith(f"{path}, {expected}")
    raw = bad if isinstance(bad, bytes) else bad.encode()
    kept = error.get("raw")
    if kept is None:
        import base64

        assert base64.b64decode(error["raw_base64"]) == raw + b"\n"
    else:
        assert kept.strip() == raw.decode()  # nothing lost: the record itself is in the errors file


def test_an_empty_message_is_kept_and_marked(tmp_path: Path) -> None:
    """Real logs hold empty replies and empty user turns: kept as they are, marked, not rejected."""
    empty = '{"id": "e", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "  "}]}'
    path = sharegpt_file(tmp_path, empty)
    report = ingest([path], tmp_path / "out.jsonl")
    assert (report.read, report.written, report.rejected) == (4, 4, 0)
    kept = orjson.loads((tmp_path / "out.jsonl").read_bytes().splitlines()[2])
    assert [(m["content"], m.get("metadata", {}).get("empty")) for m in kept["messages"]] == [("hi", None), ("  ", True)]


def test_a_50_mb_message(tmp_path: Path) -> None:
    huge = "x" * (50 * 1024 * 1024)
    record = orjson.dumps({"id": "big", "conversations": [{"from": "human", "value": huge}]})
    path = sharegpt_file(tmp_path, record)
    with pytest.raises(BadRecordError, match=r"line 3: message 0 \(user\) is 52,428,800 characters long, over the limit of 1,000,000"):
        ingest([path], tmp_path / "out.jsonl")
    # Raising the limit lets it through, whole.
    conversations, rejected = split(read_conversations(path, max_message_chars=60_000_000))
    assert rejected == [] and len(conversations[2].messages[0].content) == 50 * 1024 * 1024


def test_a_truncated_gzip_stream(tmp_path: Path) -> None:
    plain = "".join(GOOD % i + "\n" for i in range(2000)).encode()
    whole = gzip.compress(plain)
    path = tmp_path / "logs.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadRecordError, match=r"logs\.jsonl\.gz, line \d+: input ends early or is corrupt"):
        ingest([path], tmp_path / "out.jsonl")
    report = ingest([path], tmp_path / "out.jsonl", on_error="skip")
    assert report.rejected == 1 and 0 < report.written < 2000


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    with pytest.raises(BadRecordError, match=r"empty\.jsonl: file is empty: no records"):
        ingest([path], tmp_path / "out.jsonl")
    gz = tmp_path / "empty.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\n\n"))
    _, rejected = split(read_conversations(gz))
    assert [r.reason for r in rejected] == ["file is empty: no records"]


def test_a_json_array_cut_off_mid_record(tmp_path: Path) -> None:
    path = tmp_path / "dump.json"
    path.write_text("[" + ", ".join(GOOD % i for i in range(3)) + ', {"id": "cut", "conversa')
    conversations, rejected = split(read_conversations(path))
    assert [c.id for c in conversations] == ["g0", "g1", "g2"]
    assert [r.describe() for r in rejected] == [f"{path}, record 3: JSON array ends in the middle of a record (truncated file)"]


def test_a_record_of_no_known_format(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "odd.jsonl", ['{"question": "why?", "answer": "because"}'])
    _, (rejected,) = split(read_conversations(path))
    assert rejected.describe() == f"{path}, line 1: record matches no known format (keys: answer, question); pass --format"


def test_a_text_file_of_no_known_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n")
    _, (rejected,) = split(read_conversations(path))
    assert "content matches no known format" in rejected.reason


def test_uss_dialogue_with_a_broken_row(tmp_path: Path) -> None:
    path = tmp_path / "MINI.txt"
    path.write_text(
        "USER\thello\tgreet\t3,3\nSYSTEM\thi\t\t\nUSER\tOVERALL\t\t3,4\n\n"
        "USER\tbook it\tinform\t3,x\nSYSTEM\tok\t\t\nUSER\tOVERALL\t\t2,2\n"
    )
    conversations, (rejected,) = split(read_conversations(path))
    assert [c.id for c in conversations] == ["MINI-0"]
    assert rejected.describe() == f"{path}, line 5: dialogue 1: line 5: ratings '3,x' are not comma-separated numbers"
