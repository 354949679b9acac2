"""Every reader on its real data, with exact expected counts.

The expected figures were counted independently of the readers (awk over the
USS files, csv over the IFLLM log, ijson over the ShareGPT array) and are
re-derived here where that is cheap, so a reader that drops or invents records
fails.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter

import orjson
import pytest

from tests.conftest import shared, split
from wildfeedback.io.reader import read_conversations


@pytest.mark.parametrize(
    ("corpus", "dialogues", "rated_turns"),
    [("MWOZ", 1000, 11553), ("SGD", 1000, 12833), ("ReDial", 1000, 10806), ("CCPE", 500, 6360)],
)
def test_uss_dialogues_and_rated_turns(corpus: str, dialogues: int, rated_turns: int) -> None:
    path = shared("uss", f"{corpus}.txt")
    conversations, rejected = split(read_conversations(path))
    assert rejected == []
    assert len(conversations) == dialogues
    assert sum(1 for c in conversations for m in c.messages if m.ratings) == rated_turns
    # Every user turn is rated, every dialogue has its OVERALL rating, system turns carry none.
    assert all(m.ratings for c in conversations for m in c.turns("user"))
    assert all(not m.ratings for c in conversations for m in c.turns("assistant"))
    assert all(c.metadata["overall_ratings"] for c in conversations)
    assert {c.source for c in conversations} == {f"uss/{corpus}"}


def test_uss_first_mwoz_dialogue_exactly() -> None:
    first = next(iter(read_conversations(shared("uss", "MWOZ.txt"))))
    assert first.id == "MWOZ-0"
    assert first.messages[0].content == "I'm looking for a cheap restaurant in the east part of town."
    assert first.messages[0].ratings == [3, 3, 3, 3]
    assert first.messages[0].labels == {"dialogue_act": "Restaurant-Inform"}
    assert first.messages[1].role == "assistant"
    assert first.metadata["overall_ratings"] == [3, 3, 2, 3]
    assert len(first.messages) == 13  # 14 rows, less the OVERALL row


def test_uss_keeps_the_empty_turns_annotators_rated() -> None:
    conversations, _ = split(read_conversations(shared("uss", "ReDial.txt")))
    empty = [m for c in conversations for m in c.messages if m.content == ""]
    assert len(empty) == 7
    assert sum(1 for m in empty if m.ratings) == 4


def test_sharegpt_package_recovers_every_complete_conversation() -> None:
    from wildfeedback.io.ingest import sharegpt_package_file

    path = sharegpt_package_file()
    complete = _complete_array_items(path.read_text(encoding="utf-8"))
    assert complete == 17671

    conversations, rejected = split(read_conversations(path))
    reasons = Counter(r.reason for r in rejected)
    # Every complete record is either a conversation or rejected with its reason; the
    # truncated tail is the one record more.
    assert len(conversations) + len(rejected) == complete + 1
    assert reasons["JSON array ends in the middle of a record (truncated file)"] == 1
    assert rejected[-1].location.record == complete
    assert reasons["sharegpt: conversation has no messages"] == 126
    assert len(rejected) == 126 + 1
    # 70 conversations hold empty messages (129 user turns, 7 replies): kept and marked.
    assert len(conversations) == 17545
    empty = Counter(m.role for c in conversations for m in c.messages if m.metadata.get("empty"))
    assert empty == {"user": 129, "assistant": 7}
    assert sum(1 for c in conversations if any(m.metadata.get("empty") for m in c.messages)) == 70
    assert conversations[0].id == "QWJhYvA_0"
    assert {m.role for c in conversations for m in c.messages} == {"user", "assistant", "system"}


def _complete_array_items(text: str) -> int:
    """Count the complete items of a JSON array that may be cut off, with the standard
    library's decoder (independent of the reader, which splits items itself)."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    count = 0
    while True:
        while text[position] in " \t\r\n,":
            position += 1
        try:
            _, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return count
        count += 1


def test_oasst_one_conversation_per_root_to_leaf_path() -> None:
    path = shared("oasst", "en_100_tree.jsonl")
    trees = [orjson.loads(line) for line in path.read_bytes().splitlines()]

    def leaves(node: dict) -> int:
        return sum(leaves(r) for r in node["replies"]) if node["replies"] else 1

    expected = sum(leaves(t["prompt"]) for t in trees)
    conversations, rejected = split(read_conversations(path))
    assert rejected == []
    assert len(trees) == 100
    assert len(conversations) == expected == 626
    assert len({c.id for c in conversations}) == 626
    for c in conversations:
        assert c.messages[0].role == "user"
        assert all(b.parent_id == a.id for a, b in zip(c.messages, c.messages[1:], strict=False))
    ranked = {m.id: m.rank for c in conversations for m in c.messages if m.rank is not None}
    assert len(ranked) == 641  # every message with a rank, once
    assert any(m.labels.get("emojis") for c in conversations for m in c.messages)


def test_hh_rlhf_pairs() -> None:
    path = shared("hh-rlhf", "harmless-base-test.jsonl.gz")
    with gzip.open(path) as stream:
        pairs = sum(1 for _ in stream)
    assert pairs == 2312
    conversations, rejected = split(read_conversations(path))
    assert rejected == []
    single = [c for c in conversations if "pair_id" not in c.metadata]
    split_pairs = [c for c in conversations if "pair_id" in c.metadata]
    assert len(single) == 2307 and len(split_pairs) == 10
    for c in single:
        last = c.messages[-1]
        assert last.role == "assistant" and last.preferred == 0 and len(last.alternatives) == 1


def test_ifllm_sessions_in_query_order() -> None:
    path = shared("ifllm", "query_logs_table.csv")
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    sessions = {(r["user_id"], r["task_id"]) for r in rows}
    pairwise_prefs = sum(1 for r in rows if int(r["task_id"]) % 2 and r["preference"] in ("1.0", "2.0"))

    conversations, rejected = split(read_conversations(path))
    assert rejected == []
    assert len(rows) == 1691 and len(sessions) == 512
    assert len(conversations) == 512
    assert sum(len(c.turns("user")) for c in conversations) == 1691
    assert Counter(c.metadata["task_type"] for c in conversations) == {"pairwise": 257, "pointwise": 255}
    replies = [m for c in conversations for m in c.messages if m.role == "assistant"]
    assert sum(1 for m in replies if m.preferred is not None) == pairwise_prefs
    for c in conversations:
        ids = [int(m.id[1:]) for m in c.turns("user")]
        assert ids == sorted(ids)
        assert [m.role for m in c.messages] == ["user", "assistant"] * (len(c.messages) // 2)
    pairwise = next(c for c in conversations if c.metadata["task_type"] == "pairwise")
    assert all(len(m.alternatives) == 1 for m in pairwise.turns("assistant"))
