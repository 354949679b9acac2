"""What is in a corpus: counts, roles, languages, labels and length distributions.

Works on any input `read_conversations` reads, so a user can look at a raw log
before ingesting it. Lengths are kept as compact arrays (4 bytes a message) to
give exact percentiles.
"""

from __future__ import annotations

import os
import statistics
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wildfeedback.errors import Rejected
from wildfeedback.io.reader import read_conversations
from wildfeedback.schema import Conversation


def distribution(values: array | list[int]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 99
    return {
        "count": len(ordered),
        "mean": round(statistics.fmean(ordered), 2),
        "min": ordered[0],
        "p50": cuts[49],
        "p90": cuts[89],
        "p99": cuts[98],
        "max": ordered[-1],
    }


@dataclass
class CorpusStats:
    conversations: int = 0
    rejected: int = 0
    messages: int = 0
    roles: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    user_turns: array = field(default_factory=lambda: array("I"))
    lengths: dict[str, array] = field(default_factory=dict)

    def add(self, conversation: Conversation) -> None:
        self.conversations += 1
        self.messages += len(conversation.messages)
        self.sources[conversation.source] += 1
        self.languages[conversation.language or "unknown"] += 1
        if conversation.model:
            self.models[conversation.model] += 1
        user_turns = 0
        for message in conversation.messages:
            self.roles[message.role] += 1
            user_turns += message.role == "user"
            self.lengths.setdefault(message.role, array("I")).append(len(message.content))
            if message.model and not conversation.model:
                self.models[message.model] += 1
            for name, present in (
                ("rating", message.rating is not None),
                ("ratings", message.ratings is not None),
                ("thumbs", message.thumbs is not None),
                ("rank", message.rank is not None),
                ("alternatives", bool(message.alternatives)),
                ("preferred", message.preferred is not None),
            ):
                self.labels[name] += present
        self.user_turns.append(user_turns)
        for event in conversation.events:
            self.events[event.kind] += 1

    def as_dict(self, top: int = 10) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "rejected": self.rejected,
            "messages": self.messages,
            "roles": dict(self.roles.most_common()),
            "sources": dict(self.sources.most_common(top)),
            "languages": dict(self.languages.most_common(top)),
            "models": dict(self.models.most_common(top)),
            "labelled_messages": {k: v for k, v in self.labels.most_common() if v},
            "events": dict(self.events.most_common()),
            "user_turns_per_conversation": distribution(self.user_turns),
            "characters_per_message": {role: distribution(v) for role, v in sorted(self.lengths.items())},
        }


def corpus_stats(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], *, format: str | None = None
) -> CorpusStats:
    stats = CorpusStats()
    for item in read_conversations(inputs, format=format):
        if isinstance(item, Rejected):
            stats.rejected += 1
        else:
            stats.add(item)
    return stats
