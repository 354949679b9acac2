"""Reading broken and hostile files loses nothing and costs neither the run nor the
machine (issue 10, cases 4-9): a truncated or mislabelled .zst, records nested
thousands deep, records of gigabytes, a bad byte mid-array, symlink loops under
a glob, and empty messages in real logs.

Where a case is about memory, the reading runs in a child Python under an
address-space limit, so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import orjson
import pytest
import zstandard

from tests.conftest import split, write_jsonl
from wildfeedback.errors import BadRecordError
from wildfeedback.io.ingest import ingest
from wildfeedback.io.reader import read_conversations
from wildfeedback.io.sources import MAX_DEPTH, expand_inputs, too_deep_reason

REPO = Path(__file__).resolve().parents[1]
GOOD = '{"id": "g%d", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}'


def run_limited(code: str, *, memory_mb: int = 768, timeout: int = 60) -> str:
    """Run `code` in a child Python that may map at most `memory_mb` MiB; its stdout."""
    prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({memory_mb << 20}, {memory_mb << 20}))\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


REPORT = """
from wildfeedback.io.reader import read_conversations
from wildfeedback.errors import Rejected
for item in read_conversations({path!r}):
    print(item.describe() if isinstance(item, Rejected) else "ok " + item.id)
"""


# -- 4. zstd: a frame that ends early, a file that is not zstd ----------------


def zst_lines(count: int) -> bytes:
    """JSONL compressed with a flush per line, as a logger writing .zst does."""
    buffer = io.BytesIO()
    writer = zstandard.ZstdCompressor().stream_writer(buffer, closefd=False)
    for i in range(count):
        writer.write((GOOD % i + "\n").encode())
        writer.flush(zstandard.FLUSH_BLOCK)
    writer.close()
    return buffer.getvalue()


def test_a_truncated_zst_is_rejected_at_the_line_it_breaks_off(tmp_path: Path) -> None:
    whole = zst_lines(300)
    path = tmp_path / "logs.jsonl.zst"
    path.write_bytes(whole)
    conversations, rejected = split(read_conversations(path))
    assert (len(conversations), rejected) == (300, [])
    for cut in (len(whole) // 7, len(whole) // 2, len(whole) - 40, len(whole) - 1):
        path.write_bytes(whole[:cut])
        conversations, rejected = split(read_conversations(path))
        assert 0 < len(conversations) < 300 or cut == len(whole) - 1
        assert [c.id for c in conversations] == [f"g{i}" for i in range(len(conversations))]
        (cut_off,) = rejected
        assert cut_off.location.line == len(conversations) + 1
        assert "the last zstd frame ends early: the file is cut off" in cut_off.reason
    with pytest.raises(BadRecordError, match=r"logs\.jsonl\.zst, line \d+: input ends early"):
        ingest([path], tmp_path / "out.jsonl")


def test_a_small_truncated_zst_keeps_its_complete_lines(tmp_path: Path) -> None:
    """The first 64 KiB are read to detect the format; a break inside them still keeps what came before."""
    whole = zst_lines(10)
    path = tmp_path / "small.jsonl.zst"
    path.write_bytes(whole[: len(whole) // 2])
    conversations, (cut_off,) = split(read_conversations(path))
    assert 0 < len(conversations) < 10 and cut_off.location.line == len(conversations) + 1


def test_a_file_named_zst_that_is_not_zstd(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "plain.jsonl.zst", [GOOD % 1])
    conversations, (rejected,) = split(read_conversations(path))
    assert conversations == []
    assert rejected.location.path == str(path) and rejected.location.line is None
    assert rejected.reason.startswith("not zstd-compressed data, or damaged (")
    with pytest.raises(BadRecordError, match=r"plain\.jsonl\.zst: not zstd-compressed data"):
        ingest([path], tmp_path / "out.jsonl")


# -- 5. nesting depth -----------------------------------------------------------


def test_an_array_item_nested_100000_deep_is_rejected_in_bounded_memory(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / "deep.json"
    path.write_text(f"[{GOOD % 0}, {deep}, {GOOD % 2}, {'{' * 50_000}")
    lines = run_limited(REPORT.format(path=str(path))).splitlines()
    assert lines == [
        "ok g0",
        f"{path}, record 1: record nests arrays and objects more than {MAX_DEPTH} levels deep; not read",
        "ok g2",
        f"{path}, record 3: JSON array ends in the middle of a record (truncated file)",
    ]


def nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def test_a_record_nested_500_deep_is_one_rejection_under_skip(tmp_path: Path) -> None:
    # Written by hand: orjson refuses to serialise this deep.
    deep = GOOD[:-1] % 9 + ', "extra": ' + "[" * 500 + '"bottom"' + "]" * 500 + "}"
    path = write_jsonl(tmp_path / "logs.jsonl", [GOOD % 1, deep, GOOD % 3])
    report = ingest([path], tmp_path / "out.jsonl", on_error="skip")
    assert (report.written, report.rejected) == (2, 1)
    (error,) = [orjson.loads(line) for line in (tmp_path / "out.errors.jsonl").read_bytes().splitlines()]
    assert (error["line"], error["reason"]) == (2, f"record nests arrays and objects more than {MAX_DEPTH} levels deep; not read")
    assert error["raw"] == deep + "\n"  # kept whole in the errors file

    document = tmp_path / "one.json"
    document.write_text(deep.replace(", ", ",\n  "))
    _, (rejected,) = split(read_conversations(document))
    assert rejected.describe() == f"{document}, record 0: {too_deep_reason(MAX_DEPTH)}"


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    record = orjson.loads(GOOD % 1)
    record["extra"] = nested(MAX_DEPTH - 1)  # the record object is the first level
    for path in (write_jsonl(tmp_path / "ok.jsonl", [orjson.dumps(record)]), tmp_path / "ok.json"):
        if path.suffix == ".json":
            path.write_bytes(b"[" + orjson.dumps(record) + b"]")
        conversations, rejected = split(read_conversations(path))
        assert (len(conversations), rejected) == (1, [])


# -- 6. size before parsing --------------------------------------------------------


def test_a_700_mb_line_in_a_small_gz_is_rejected_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write((GOOD % 1 + "\n").encode())
        out.write(b'{"id": "huge", "conversations": [{"from": "human", "value": "')
        block = b"x" * (1 << 20)
        for _ in range(700):
            out.write(block)
        out.write(b'"}]}\n' + (GOOD % 3 + "\n").encode())
    assert path.stat().st_size < 5_000_000
    size = len(b'{"id": "huge", "conversations": [{"from": "human", "value": "') + 700 * (1 << 20) + len(b'"}]}\n')
    lines = run_limited(REPORT.format(path=str(path)), memory_mb=512).splitlines()
    assert lines == [
        "ok g1",
        f"{path}, line 2: line is over 67,108,864 bytes ({size:,} bytes; --max-record-bytes); skipped, not kept",
        "ok g3",
    ]


def test_a_300_mb_string_in_a_json_array_is_rejected_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.json.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(f"[{GOOD % 0},\n".encode())
        out.write(b'{"id": "huge", "conversations": [{"from": "human", "value": "')
        block = b"x" * ((1 << 20) - 2) + b'\\"'  # an escaped quote, which must not end the string
        for _ in range(300):
            out.write(block)
        out.write(f'"}}]}},\n{GOOD % 2}]'.encode())
    lines = run_limited(REPORT.format(path=str(path)), memory_mb=512).splitlines()
    start = len(f"[{GOOD % 0},")  # the item and its leading newline, up to its comma
    size = len(b'{"id": "huge", "conversations": [{"from": "human", "value": "') + 300 * (1 << 20) + len('"}]}')
    assert lines == [
        "ok g0",
        f"{path}, record 1: record is over 67,108,864 bytes ({size + 1:,} bytes; --max-record-bytes); skipped, not kept "
        f"(input bytes {start:,} to {start + size + 1:,})",
        "ok g2",
    ]


def test_max_record_bytes_applies_to_every_container(tmp_path: Path) -> None:
    long = GOOD.replace('"hi"', '"' + "h" * 500 + '"') % 2
    jsonl = write_jsonl(tmp_path / "logs.jsonl", [GOOD % 1, long, GOOD % 3])
    array = tmp_path / "logs.json"
    array.write_text(f"[{GOOD % 1}, {long}, {GOOD % 3}]")
    for path, where in ((jsonl, "line 2: line"), (array, "record 1: record")):
        conversations, (rejected,) = split(read_conversations(path, max_record_bytes=300))
        assert [c.id for c in conversations] == ["g1", "g3"]
        assert rejected.describe().startswith(f"{path}, {where} is over 300 bytes (")
        assert split(read_conversations(path, max_record_bytes=600))[1] == []
    document = tmp_path / "one.json"
    document.write_bytes(orjson.dumps(orjson.loads(long), option=orjson.OPT_INDENT_2))
    _, (rejected,) = split(read_conversations(document, max_record_bytes=300))
    assert rejected.describe().startswith(f"{document}, record 0: the file's one JSON document is over 300 bytes (")


def test_the_max_record_bytes_option(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from wildfeedback.cli import app

    long = GOOD.replace('"hi"', '"' + "h" * 500 + '"') % 2
    path = write_jsonl(tmp_path / "logs.jsonl", [GOOD % 1, long])
    output = tmp_path / "out.jsonl"
    args = ["ingest", str(path), "-o", str(output), "--on-error", "skip", "--json"]
    result = CliRunner().invoke(app, [*args, "--max-record-bytes", "300"])
    assert result.exit_code == 0, result.output
    assert '"rejected": 1' in result.stdout
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and '"rejected": 0' in result.stdout


# -- 7. bad bytes in a JSON array, byte-order marks, lone surrogates ---------------


def test_a_bad_byte_mid_array_loses_only_its_item(tmp_path: Path) -> None:
    items = [(GOOD % i).encode() for i in range(6)]
    items[1] = items[1].replace(b'"hello"', b'"caf\xe9"')  # Latin-1, not UTF-8
    items[3] = b"\xef\xbb\xbf" + items[3]  # a byte-order mark mid-array
    items[4] = items[4].replace(b'"hello"', b'"\\ud800"')  # a lone surrogate
    path = tmp_path / "dump.json"
    path.write_bytes(b"[" + b",\n".join(items) + b"]")
    conversations, rejected = split(read_conversations(path))
    assert [c.id for c in conversations] == ["g0", "g2", "g5"]
    assert [(r.location.record, r.reason.split(":")[0]) for r in rejected] == [
        (1, "not valid UTF-8"), (3, "invalid JSON"), (4, "invalid JSON")
    ]
    assert "no low surrogate" in rejected[2].reason
    assert [r.raw for r in rejected] == [items[1], items[3], items[4]]  # nothing lost


def test_a_byte_order_mark_at_the_start_is_skipped(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(bom + f"{GOOD % 1}\n{GOOD % 2}\n".encode())
    array = tmp_path / "bom.json"
    array.write_bytes(bom + f"[{GOOD % 1}, {GOOD % 2}]".encode())
    document = tmp_path / "doc.json"
    document.write_bytes(bom + orjson.dumps(orjson.loads(GOOD % 1), option=orjson.OPT_INDENT_2))
    gz = tmp_path / "bom.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl.read_bytes()))
    for path, count in ((jsonl, 2), (array, 2), (document, 1), (gz, 2)):
        conversations, rejected = split(read_conversations(path))
        assert (len(conversations), rejected) == (count, []), path


def test_an_array_with_a_syntax_error_keeps_the_items_around_it(tmp_path: Path) -> None:
    path = tmp_path / "dump.json"
    path.write_text(f'[{GOOD % 0}, {{"id": "bad",, }}, {GOOD % 2},, {GOOD % 4}] trailing')
    conversations, rejected = split(read_conversations(path))
    assert [c.id for c in conversations] == ["g0", "g2", "g4"]
    assert [(r.location.record, r.reason.split(":")[0]) for r in rejected] == [
        (1, "invalid JSON"), (3, "invalid JSON"), (5, "content after the end of the JSON array")
    ]


def test_array_items_split_across_chunks(tmp_path: Path) -> None:
    """Strings, escapes and brackets that straddle a chunk boundary are followed exactly."""
    from wildfeedback.io.sources import iter_json_array

    values = [{"s": 'a"b]}[{,\\', "t": "\\"}, [1, {"x": 'y\\"'}], "plain", 3, {"deep": nested(20)}]
    path = tmp_path / "small.json"
    path.write_bytes(orjson.dumps(values))
    for chunk_size in range(1, 14):
        got = [item.value for item in iter_json_array(path, chunk_size=chunk_size)]
        assert got == values, chunk_size

    # Many items of awkward text, cut at every kind of place: the same values as a whole-file parse.
    import random

    rng = random.Random(7)
    alphabet = ['"', "\\", "[", "]", "{", "}", ",", " ", "\n", "a", "é", "\u2028"]
    values = [{"id": str(i), "text": "".join(rng.choices(alphabet, k=rng.randrange(0, 40))), "n": [i, [i]]} for i in range(300)]
    path.write_bytes(orjson.dumps(values))
    for chunk_size in (5, 16, 61, 1000):
        got = [item.value for item in iter_json_array(path, chunk_size=chunk_size)]
        assert got == values, chunk_size


# -- 8. globs and symlinks -------------------------------------------------------


def test_a_symlink_loop_reads_each_file_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    write_jsonl(data / "a.jsonl", [GOOD % 1])
    write_jsonl(data / "sub" / "b.jsonl", [GOOD % 2])
    (data / "loop").symlink_to(data, target_is_directory=True)
    (data / "sub" / "up").symlink_to(data, target_is_directory=True)
    (data / "same.jsonl").symlink_to(data / "a.jsonl")
    expected = [data / "a.jsonl", data / "sub" / "b.jsonl"]
    assert expand_inputs([data]) == expected
    assert expand_inputs([f"{data}/**/*.jsonl"]) == expected
    assert expand_inputs([f"{data}/*.jsonl", data / "a.jsonl"]) == [data / "a.jsonl"]
    assert expand_inputs([f"{data}/*/*.jsonl"]) == [data / "sub" / "b.jsonl"]


def test_two_symlink_loops_under_a_glob_finish(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "a.jsonl", [GOOD % 1])
    (data / "one").symlink_to(data, target_is_directory=True)
    (data / "two").symlink_to(data, target_is_directory=True)
    code = f"""
    from wildfeedback.io.sources import expand_inputs
    print([str(p) for p in expand_inputs([{str(data / "**" / "*.jsonl")!r}, {str(data)!r}])])
    """
    assert run_limited(code, timeout=30).strip() == str([str(data / "a.jsonl")])


def test_glob_matches_like_the_standard_library(tmp_path: Path) -> None:
    import glob

    for name in ("a.jsonl", "b.json", ".hidden.jsonl", "x/c.jsonl", "x/y/d.jsonl", ".h/e.jsonl", "x/.i/f.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(GOOD % 0)
    for pattern in ("*.jsonl", "**/*.jsonl", "x/**/*.jsonl", "*/*.jsonl", "**", "x/**", "*.json*", ".*"):
        text = f"{tmp_path}/{pattern}"
        standard = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        assert expand_inputs([text]) == standard, pattern


# -- 9. empty messages: the README's own command -------------------------------------


def test_the_readme_ingest_command_reads_the_packaged_sharegpt(tmp_path: Path) -> None:
    """`wildfeedback ingest -o OUT.jsonl`, as the README says: empty messages are kept; the
    package's own defects go to the errors file unless --on-error fail is asked for."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "wildfeedback"), "ingest", "-o", "OUT.jsonl"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [orjson.loads(line) for line in (tmp_path / "OUT.jsonl").read_bytes().splitlines()]
    assert len(records) == 17545
    errors = [orjson.loads(line) for line in (tmp_path / "OUT.errors.jsonl").read_bytes().splitlines()]
    assert len(errors) == 126 + 1  # conversations with no messages, and the record cut off at the end
    explicit = subprocess.run(
        [str(Path(sys.executable).parent / "wildfeedback"), "ingest", "-o", "fail.jsonl", "--on-error", "fail"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert explicit.returncode == 1 and "record 71: sharegpt: conversation has no messages" in explicit.stderr
    empty = [m for r in records for m in r["messages"] if m.get("metadata", {}).get("empty")]
    assert len(empty) == 136 and all(not m["content"].strip() for m in empty)


def test_a_conversation_with_no_messages_is_still_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "logs.jsonl", ['{"id": "x", "conversations": []}'])
    _, (rejected,) = split(read_conversations(path))
    assert rejected.reason == "sharegpt: conversation has no messages"


def test_zlib_is_not_what_zst_uses(tmp_path: Path) -> None:
    """A .zst file holding gzip data is named as not zstd, not read as garbage."""
    path = tmp_path / "wrong.jsonl.zst"
    path.write_bytes(zlib.compress((GOOD % 1).encode()))
    _, (rejected,) = split(read_conversations(path))
    assert rejected.reason.startswith("not zstd-compressed data")


def test_empty_messages_downstream(tmp_path: Path) -> None:
    """An empty reply the user reacts to is a rejected side; an empty user turn is no prompt."""
    from wildfeedback.preferences.candidates import dissatisfied_replies, signals_by_turn
    from wildfeedback.schema import Signal

    turns = [("human", "Plan a day in Rome."), ("gpt", " "), ("human", "You said nothing!"),
             ("human", ""), ("gpt", "Day in Paris."), ("human", "No, Rome!")]
    record = {"id": "c", "conversations": [{"from": f, "value": v} for f, v in turns]}
    path = write_jsonl(tmp_path / "logs.jsonl", [orjson.dumps(record)])
    (conversation,), _ = split(read_conversations(path))
    assert [i for i, m in enumerate(conversation.messages) if m.metadata.get("empty")] == [1, 3]
    signals = signals_by_turn(Signal(conversation_id="c", turn_index=i, label="DSAT", detector="test") for i in (2, 5))
    candidates, drops = dissatisfied_replies(conversation, signals)
    assert [(c.reply_index, c.rejected) for c in candidates] == [(1, " ")]
    assert [(d.turn_index, d.reason) for d in drops] == [(4, "prompt ends with an empty user turn")]
