"""IFLLM behaviour joined to the IFLLM query logs: each query's replies get their own gaze and mouse traces.

A behaviour task directory covers a whole session (user, task): every query the
user asked in it. The query logs give each query a `query_timestamp`; the study
page writes it, from the same browser clock as the traces' `epoch_ms`, right
after it has put the query's two replies on screen, truncated to the second.
The replies stay on screen until the next query's replies replace them. So the
samples of query k are those in the window

    [ts_k + 1 s, ts_{k+1} + 1 s)        (the last query: up to the end of the trace)

where the 1 s covers the truncation: the replies appeared at some point of the
second after `ts_k`; samples in that second are given to the query before. This
is the approximate part: up to one second at each boundary may belong to the
neighbouring query (about 1% of a median 79 s window). Samples before the first
query's replies (the page's placeholder text) belong to no query. A query
whose timestamp is missing gets no samples (its time goes to the query before).

Every sample over a reply carries the characters under the point: that text is
looked up in the reply the window says was on screen. Verified: found within 15
characters of the logged offset. Re-anchored: found elsewhere in that reply (one
worker's page measured offsets in a differently laid-out text), the offset is
moved to the nearest occurrence. Unverified: not in that reply (the caret fell on
another element of the page, e.g. a button): the sample keeps its box but loses
its offset. The counts are in `AlignmentReport`.

Box numbers follow `Message.preferred`: 0 = `llm_response_1` (left, the
assistant message), 1 = `llm_response_2` (right, `alternatives[0]`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wildfeedback.implicit.ifllm_archive import ArchiveReport, TaskTraces, read_behavior_archive
from wildfeedback.implicit.traces import TraceArrays
from wildfeedback.schema import Conversation, Event, Message

BOUNDARY_MS = 1000.0  # query_timestamp is truncated to the second
NEAR_CHARS = 15


@dataclass
class AlignmentReport:
    sessions: int = 0
    sessions_without_traces: int = 0
    traces_without_session: list[str] = field(default_factory=list)
    windows: int = 0
    queries_without_timestamp: int = 0
    samples: int = 0
    samples_before_first_reply: int = 0
    over_a_reply: int = 0
    verified: int = 0
    reanchored: int = 0
    unverified: int = 0
    no_text: int = 0

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class QueryWindow:
    """One query's replies and the traces recorded while they were on screen."""

    conversation: Conversation
    message_index: int  # the assistant message (box 0); its alternatives are boxes 1..
    start: float
    end: float
    gaze: TraceArrays
    mouse: TraceArrays

    @property
    def message(self) -> Message:
        return self.conversation.messages[self.message_index]

    @property
    def replies(self) -> list[str]:
        m = self.message
        return [m.content, *(a.content for a in m.alternatives)]


def _epoch_ms(message: Message) -> float | None:
    return message.timestamp.timestamp() * 1000.0 if message.timestamp is not None else None


def windows_of(conversation: Conversation, end_of_trace: float, boundary_ms: float = BOUNDARY_MS
               ) -> list[tuple[int, float, float]]:
    """(assistant message index, start, end) for every reply with a timestamp, in time order."""
    timed = [(m.index, t) for m in conversation.messages if m.role == "assistant" and (t := _epoch_ms(m)) is not None]
    timed.sort(key=lambda item: item[1])
    out = []
    for k, (index, t) in enumerate(timed):
        end = timed[k + 1][1] + boundary_ms if k + 1 < len(timed) else max(end_of_trace + 1.0, t + boundary_ms)
        out.append((index, t + boundary_ms, end))
    return out


def check_offsets(trace: TraceArrays, replies: list[str], report: AlignmentReport | None = None) -> TraceArrays:
    """Check each sample's text against the reply it is over; re-anchor or drop its offset (see module doc)."""
    char = trace.char.copy()
    counts = {"verified": 0, "reanchored": 0, "unverified": 0, "no_text": 0}
    for i in np.flatnonzero(trace.box >= 0).tolist():
        box = int(trace.box[i])
        snippet = trace.text[i] if trace.text is not None else None
        if box >= len(replies):
            char[i] = -1
            counts["unverified"] += 1
            continue
        if not snippet:
            counts["no_text"] += 1
            continue
        reply, at = replies[box], int(char[i])
        if at >= 0 and snippet in reply[max(0, at - NEAR_CHARS): at + len(snippet) + NEAR_CHARS]:
            counts["verified"] += 1
            continue
        found, start = [], reply.find(snippet)
        while start >= 0 and len(found) < 1000:
            found.append(start)
            start = reply.find(snippet, start + 1)
        if found:
            nearest = min(found, key=lambda p: abs(p + len(snippet) // 2 - at))
            char[i] = min(nearest + len(snippet) // 2, len(reply) - 1)
            counts["reanchored"] += 1
        else:
            char[i] = -1
            counts["unverified"] += 1
    if report is not None:
        report.over_a_reply += int((trace.box >= 0).sum())
        for key, value in counts.items():
            setattr(report, key, getattr(report, key) + value)
    return TraceArrays(trace.modality, trace.t, trace.x, trace.y, trace.box, trace.box_x, trace.box_y, char,
                       trace.valid, trace.visible_ms, trace.text)


def query_windows(conversation: Conversation, task: TaskTraces, report: AlignmentReport | None = None,
                  boundary_ms: float = BOUNDARY_MS) -> list[QueryWindow]:
    """Split a session's traces into its queries' windows, offsets checked against the replies."""
    report = report if report is not None else AlignmentReport()
    ends = [float(tr.t[-1]) for tr in (task.gaze, task.mouse) if len(tr)]
    if not ends:
        return []
    spans = windows_of(conversation, max(ends), boundary_ms)
    report.queries_without_timestamp += sum(1 for m in conversation.messages if m.role == "assistant") - len(spans)
    report.samples += len(task.gaze) + len(task.mouse)
    if spans:
        first = spans[0][1]
        report.samples_before_first_reply += int((task.gaze.t < first).sum() + (task.mouse.t < first).sum())
    out = []
    for index, start, end in spans:
        message = conversation.messages[index]
        replies = [message.content, *(a.content for a in message.alternatives)]
        gaze = check_offsets(task.gaze.window(start, end), replies, report)
        mouse = check_offsets(task.mouse.window(start, end), replies, report)
        out.append(QueryWindow(conversation, index, start, end, gaze, mouse))
        report.windows += 1
    return out


def trace_events(window: QueryWindow, keep_text: bool = False) -> list[Event]:
    """The window's traces as schema events on its assistant message (the numbering of `preferred`)."""
    events = []
    for trace in (window.gaze, window.mouse):
        events.append(Event(
            kind="gaze_trace" if trace.modality == "gaze" else "mouse_trace",
            message_index=window.message_index,
            message_id=window.message.id,
            value=trace.to_trace(keep_text=keep_text).model_dump(mode="json"),
            metadata={"source": "ifllm", "window_start_ms": window.start, "window_end_ms": window.end,
                      "assignment": "query_timestamp + 1 s to the next one's"},
        ))
    return events


def read_sessions(query_logs: str | os.PathLike[str], archive: str | os.PathLike[str],
                  archive_report: ArchiveReport | None = None, report: AlignmentReport | None = None
                  ) -> Iterator[tuple[Conversation, list[QueryWindow]]]:
    """Every IFLLM session that has behaviour logs, with its query windows, streaming the archive once.

    Sessions of the query logs without a behaviour directory, and behaviour
    directories without a session, are counted in `report`.
    """
    from wildfeedback.io.reader import read_conversations

    report = report if report is not None else AlignmentReport()
    sessions = {}
    for item in read_conversations(Path(query_logs)):
        if isinstance(item, Conversation):
            sessions[(item.user_id, str(item.metadata.get("task_id")))] = item
    seen = set()
    for task in read_behavior_archive(archive, archive_report, keep_text=True):
        key = (task.user_id, task.task_id)
        conversation = sessions.get(key)
        if conversation is None:
            report.traces_without_session.append(f"{task.user_id}/{task.task_id}")
            continue
        seen.add(key)
        report.sessions += 1
        yield conversation, query_windows(conversation, task, report)
    report.sessions_without_traces = sum(
        1 for key, c in sessions.items() if key not in seen and c.metadata.get("task_type") == "pairwise")


def with_trace_events(conversation: Conversation, windows: list[QueryWindow], keep_text: bool = False) -> Conversation:
    """A copy of the conversation with its windows' gaze and mouse traces added as events."""
    events = list(conversation.events)
    for window in windows:
        events.extend(trace_events(window, keep_text))
    return conversation.model_copy(update={"events": events})
