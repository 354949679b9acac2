"""Drop conversations with too few user turns.

Feedback lives in what a user says *after* a reply: a one-shot prompt carries
no reaction to judge, so pipelines that mine follow-ups ask for a minimum
number of user turns. It is the cheapest filter (a count), so it runs first.
"""

from __future__ import annotations

from wildfeedback.engine.stage import Tally
from wildfeedback.schema import Conversation


class MinUserTurns:
    """Keep conversations with at least `minimum` user messages."""

    def __init__(self, minimum: int, stage: str = "filter"):
        if minimum < 0:
            raise ValueError(f"min_user_turns must be >= 0, not {minimum}")
        self.minimum = minimum
        self.stage = stage
        self.reason = f"fewer than {minimum} user turns"

    def keeps(self, conversation: Conversation) -> bool:
        return sum(1 for message in conversation.messages if message.role == "user") >= self.minimum

    def __call__(self, batch: list[Conversation], tally: Tally) -> list[Conversation]:
        kept = [conversation for conversation in batch if self.keeps(conversation)]
        tally.add(self.stage, self.reason, len(batch) - len(kept))
        return kept
