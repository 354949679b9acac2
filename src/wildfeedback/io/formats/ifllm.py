"""IFLLM query logs (`query_logs_table.csv`): one conversation per (user_id, task_id).

Each CSV row is one query with one or two responses. Rows of a session are not
contiguous in the file, so the file is grouped in memory (it is a few MB; the
behaviour logs, which are large, are read elsewhere and streamed). Within a
session, messages follow `query_ID` order.

On a pairwise task (odd `task_id`) the user saw two responses side by side:
`llm_response_1` (left) becomes the assistant message and `llm_response_2`
(right) its alternative; `preference` 1 (left) -> `preferred=0`, 2 (right) ->
`preferred=1`; any other value is kept raw in `labels["preference"]`. Each
response's Likert score (1-5, the user's own) is its `rating`.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wildfeedback.errors import Location, RecordError, Rejected
from wildfeedback.io.formats.base import FileFormat, build, register
from wildfeedback.io.sources import TRUNCATION_ERRORS, open_binary, truncation_reason
from wildfeedback.schema import Conversation

COLUMNS = (
    "query_ID",
    "user_id",
    "task_id",
    "user_query",
    "llm_response_1",
    "llm_response_2",
    "llm_name_1",
    "llm_name_2",
    "likert_1",
    "likert_2",
    "preference",
    "adjustment",
    "query_timestamp",
)


@register
class IFLLMQueryLogs(FileFormat):
    name = "ifllm"
    description = "IFLLM query logs CSV (query_ID, user_id, task_id, user_query, llm_response_1, ...)"

    def sniff_file(self, path: Path, head: bytes) -> bool:
        return head.lstrip(b"\xef\xbb\xbf").startswith(b"query_ID,user_id,task_id,")

    def read(self, path: Path) -> Iterator[Conversation | Rejected]:
        name = str(path)
        sessions: dict[tuple[str, str], list[tuple[int, dict[str, str]]]] = defaultdict(list)
        with open_binary(path) as stream:
            try:
                text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
                rows = csv.DictReader(text)
                missing = [c for c in COLUMNS if c not in (rows.fieldnames or [])]
                if missing:
                    yield Rejected(Location(name, line=1), f"header lacks columns: {', '.join(missing)}")
                    return
                for row in rows:
                    line = rows.line_num
                    if None in row or any(v is None for v in row.values()):
                        yield Rejected(Location(name, line=line), "row has a different number of fields than the header", row)
                        continue
                    sessions[(row["user_id"], row["task_id"])].append((line, row))
            except UnicodeDecodeError as error:
                yield Rejected(Location(name), f"not valid UTF-8: {error}")
                return
            except TRUNCATION_ERRORS as error:
                yield Rejected(Location(name), truncation_reason(error))
        for (user_id, task_id), session in sessions.items():
            first_line = min(line for line, _ in session)
            try:
                yield build(_conversation(user_id, task_id, session))
            except RecordError as error:
                reason = f"session user {user_id} task {task_id}: {error}"
                yield Rejected(Location(name, line=first_line), reason, [row for _, row in session])


def _conversation(user_id: str, task_id: str, session: list[tuple[int, dict[str, str]]]) -> dict[str, Any]:
    pairwise = _integer(task_id, "task_id") % 2 == 1
    ordered = sorted(session, key=lambda item: _integer(item[1]["query_ID"], f"query_ID on line {item[0]}"))
    messages: list[dict[str, Any]] = []
    for line, row in ordered:
        timestamp = _timestamp(row["query_timestamp"])
        user_metadata: dict[str, Any] = {"adjustment": row["adjustment"] == "1", "line": line}
        if timestamp is None and row["query_timestamp"]:
            user_metadata["query_timestamp"] = row["query_timestamp"]  # kept raw: not a real date
        messages.append(
            {
                "role": "user",
                "content": row["user_query"],
                "index": len(messages),
                "id": f"q{row['query_ID']}",
                "timestamp": timestamp,
                "metadata": user_metadata,
            }
        )
        reply: dict[str, Any] = {
            "role": "assistant",
            "content": row["llm_response_1"],
            "index": len(messages),
            "id": f"q{row['query_ID']}-r1",
            "model": row["llm_name_1"] or None,
            "timestamp": timestamp,
            "rating": _likert(row["likert_1"], line),
        }
        if pairwise:
            reply["alternatives"] = [
                {
                    "content": row["llm_response_2"],
                    "id": f"q{row['query_ID']}-r2",
                    "model": row["llm_name_2"] or None,
                    "rating": _likert(row["likert_2"], line),
                }
            ]
            preference = row["preference"].strip()
            if preference in ("1", "1.0"):
                reply["preferred"] = 0
            elif preference in ("2", "2.0"):
                reply["preferred"] = 1
            if preference:
                reply["labels"] = {"preference": preference}
        messages.append(reply)
    return {
        "id": f"ifllm-{user_id}-{task_id}",
        "source": "ifllm",
        "user_id": user_id,
        "created_at": next((m["timestamp"] for m in messages if m["timestamp"]), None),
        "messages": messages,
        "metadata": {"task_id": int(task_id), "task_type": "pairwise" if pairwise else "pointwise"},
    }


def _timestamp(text: str) -> str | None:
    """The log's own time, or None for empty and MySQL zero dates ('0000-00-00 ...')."""
    text = text.strip()
    return None if not text or text.startswith("0000-00-00") else text


def _integer(text: str, what: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        raise RecordError(f"{what} {text!r} is not a number") from None


def _likert(text: str, line: int) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise RecordError(f"line {line}: Likert rating {text!r} is not a number") from None
    if not 1 <= value <= 5:
        raise RecordError(f"line {line}: Likert rating {value} is outside 1-5")
    return value
