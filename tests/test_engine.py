"""The local executor: batches through stages into a writer, with drops counted and
bad records handled by one policy."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from wildfeedback.engine import LocalExecutor, Tally
from wildfeedback.errors import BadRecordError, Location, Rejected
from wildfeedback.io.writers import open_writer
from wildfeedback.schema import Conversation


def conversation(i: int) -> Conversation:
    return Conversation.model_validate(
        {"id": f"c{i}", "source": "test", "messages": [{"role": "user", "content": "x" * i, "index": 0}]}
    )


class KeepEven:
    name = "even"

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, batch: list[Conversation], tally: Tally) -> list[Conversation]:
        self.batch_sizes.append(len(batch))
        kept = [c for c in batch if len(c.messages[0].content) % 2 == 0]
        tally.add(self.name, "odd length", len(batch) - len(kept))
        with tally.timed("even: sleeping"):
            time.sleep(0.02)
        return kept


def test_batches_flow_through_stages_and_drops_are_counted(tmp_path: Path) -> None:
    stage = KeepEven()
    seen = []
    executor = LocalExecutor([stage], batch_size=4, progress=lambda report: seen.append(report.written))
    report = executor.run((conversation(i) for i in range(10)), open_writer(tmp_path / "out.jsonl"))
    assert stage.batch_sizes == [4, 4, 2]
    assert (report.read, report.written, report.rejected) == (10, 5, 0)
    assert report.stages == {"even: odd length": 5}
    assert report.timings["even: sleeping"] >= 0.05 and report.as_dict()["timings"] == report.timings
    assert seen == [2, 4, 5]
    ids = [orjson.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert ids == ["c0", "c2", "c4", "c6", "c8"]


def test_fail_stops_at_the_first_rejected_record_and_leaves_no_output(tmp_path: Path) -> None:
    bad = Rejected(Location("logs.jsonl", line=7), "invalid JSON")
    items = [conversation(2), bad, conversation(4)]
    with pytest.raises(BadRecordError, match="logs.jsonl, line 7: invalid JSON"):
        LocalExecutor(batch_size=1).run(iter(items), open_writer(tmp_path / "out.parquet"))
    assert list(tmp_path.iterdir()) == []


def test_skip_groups_reasons_and_writes_each_rejection(tmp_path: Path) -> None:
    items = [
        Rejected(Location("a.jsonl", line=3), "message 3 (user) is empty", b"{}"),
        conversation(2),
        Rejected(Location("a.jsonl", line=9), "message 12 (user) is empty", b"{}"),
    ]
    errors = tmp_path / "errors.jsonl"
    report = LocalExecutor(on_error="skip", errors_path=errors).run(iter(items), open_writer(tmp_path / "o.jsonl"))
    assert report.rejected_by_reason == {"message N (user) is empty": 2}
    assert [orjson.loads(line)["line"] for line in errors.read_bytes().splitlines()] == [3, 9]


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="on_error must be 'fail' or 'skip'"):
        LocalExecutor(on_error="ignore")  # type: ignore[arg-type]
