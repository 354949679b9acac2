"""IFLLM behaviour joined to the query logs: query windows, offset checks, trace events, and the whole real
archive read once (exact counts verified by hand against the unpacked files)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from tests.conftest import shared
from wildfeedback.implicit.ifllm import (
    BOUNDARY_MS,
    AlignmentReport,
    check_offsets,
    read_sessions,
    trace_events,
    windows_of,
    with_trace_events,
)
from wildfeedback.implicit.ifllm_archive import ArchiveReport
from wildfeedback.implicit.traces import TraceArrays
from wildfeedback.schema import Conversation

REPLY = "The quick brown fox jumps over the lazy dog. The quick brown fox sleeps."


def ms(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000


def session() -> Conversation:
    return Conversation.model_validate({
        "id": "s", "source": "ifllm", "user_id": "u",
        "messages": [
            {"role": "user", "content": "q1", "index": 0, "timestamp": "2025-01-01T00:00:10"},
            {"role": "assistant", "content": REPLY, "index": 1, "timestamp": "2025-01-01T00:00:10",
             "alternatives": [{"content": "other"}]},
            {"role": "user", "content": "q2", "index": 2, "timestamp": "2025-01-01T00:01:00"},
            {"role": "assistant", "content": "b", "index": 3, "timestamp": "2025-01-01T00:01:00"},
            {"role": "user", "content": "q3", "index": 4},
            {"role": "assistant", "content": "c", "index": 5},  # no timestamp: no window
        ],
    })


def test_windows_run_from_one_reply_to_the_next():
    start1, start2 = ms("2025-01-01T00:00:10"), ms("2025-01-01T00:01:00")
    spans = windows_of(session(), end_of_trace=start2 + 30_000)
    assert spans == [(1, start1 + BOUNDARY_MS, start2 + BOUNDARY_MS), (3, start2 + BOUNDARY_MS, start2 + 30_001)]


def test_offsets_are_verified_reanchored_or_dropped():
    trace = TraceArrays.build(
        "gaze", t=np.arange(6, dtype=float),
        box=[0, 0, 0, 1, 0, -1], char=[6, 60, 20, 2, 10, -1],
        text=["ck brow", "jumps over", "zzz", "oth", None, None],
    )
    report = AlignmentReport()
    checked = check_offsets(trace, [REPLY, "other"], report)
    # 'ck brow' sits at 7..14: near 6, verified. 'jumps over' is at 20, not near 60: moved to 20 + 10 // 2.
    # 'zzz' is nowhere in the left reply: the offset goes. 'oth' at 0 of the right reply, near 2: verified.
    assert checked.char.tolist() == [6, 25, -1, 2, 10, -1]
    assert checked.box.tolist() == trace.box.tolist()  # boxes are kept
    assert (report.verified, report.reanchored, report.unverified, report.no_text, report.over_a_reply) == (
        2, 1, 1, 1, 5)


def test_trace_events_are_schema_events_on_the_assistant_message():
    trace = TraceArrays.build("gaze", t=np.array([1.0, 2.0]), box=[0, 1], char=[3, -1], text=["abc", None])
    from wildfeedback.implicit.ifllm import QueryWindow

    window = QueryWindow(session(), 1, 0.0, 10.0, trace, TraceArrays.empty("mouse"))
    gaze_event, mouse_event = trace_events(window)
    assert (gaze_event.kind, gaze_event.message_index, mouse_event.kind) == ("gaze_trace", 1, "mouse_trace")
    assert gaze_event.value["box"] == [0, 1] and gaze_event.value["char"] == [3, None]
    assert gaze_event.value["text"] is None and trace_events(window, keep_text=True)[0].value["text"] == ["abc", None]
    enriched = with_trace_events(session(), [window])
    assert len(enriched.events) == 2
    again = Conversation.model_validate_json(enriched.to_json())
    assert TraceArrays.from_event(again.events[0]).box.tolist() == [0, 1]


@pytest.fixture(scope="module")
def real():
    """Stream the whole archive once; keep the reports and one session's windows."""
    archive_report, alignment = ArchiveReport("ifllm"), AlignmentReport()
    kept, windows_per_session = None, {}
    for conversation, windows in read_sessions(shared("ifllm", "query_logs_table.csv"),
                                               shared("ifllm", "ifllm_pairwise_behavior.tar.xz"),
                                               archive_report, alignment):
        windows_per_session[conversation.id] = len(windows)
        if conversation.id == "ifllm-worker_f972316e-183":
            kept = (conversation, windows)
    return archive_report, alignment, kept, windows_per_session


@pytest.mark.slow
def test_the_real_archive_counts(real):
    archive_report, _, _, _ = real
    totals = archive_report.totals()
    assert totals == {"rows": 7_739_957, "parsed": 6_636_238, "repaired": 26_895, "duplicates": 1_103_719,
                      "rejected": 0, "members": 1_550, "skipped_members": 0, "tasks": 259, "unmatched": 24}
    layouts = [m.layout for m in archive_report.members]
    assert (layouts.count(4), layouts.count(7), layouts.count(6)) == (518, 892, 140)
    top = max(archive_report.members, key=lambda m: m.repaired)
    assert top.repaired > 0 and top.rejected == 0


@pytest.mark.slow
def test_the_real_join(real):
    _, alignment, kept, windows_per_session = real
    a = alignment.as_dict()
    assert (a["sessions"], a["sessions_without_traces"], a["windows"]) == (254, 3, 817)
    assert sorted(a["traces_without_session"]) == ["worker_1a68b95d/61", "worker_1a68b95d/87", "worker_6129fc84/61",
                                                   "worker_6129fc84/81", "worker_6129fc84/87"]
    assert (a["verified"], a["reanchored"], a["unverified"], a["no_text"]) == (969_441, 25_620, 16_697, 63_343)
    assert a["over_a_reply"] == a["verified"] + a["reanchored"] + a["unverified"] + a["no_text"]
    assert sum(windows_per_session.values()) == 817
    conversation, windows = kept
    assert [w.message_index for w in windows] == [1, 3, 5]
    starts = [ms("2025-12-14T02:51:28"), ms("2025-12-14T02:52:59"), ms("2025-12-14T02:54:18")]
    assert [w.start for w in windows] == [s + BOUNDARY_MS for s in starts]
    assert [w.end for w in windows[:2]] == [s + BOUNDARY_MS for s in starts[1:]]
    for w in windows:
        assert len(w.gaze) > 100 and np.all((w.gaze.t >= w.start) & (w.gaze.t < w.end))
        assert set(w.gaze.box.tolist()) <= {-1, 0, 1}
        assert np.all(w.gaze.char[w.gaze.box < 0] == -1)
    assert windows[0].replies[0] == conversation.messages[1].content
