"""Raw material for preference data, read off conversations and their signals.

* **Dissatisfied replies** (`Candidate`): an assistant reply whose next user turn
  showed DSAT. Prompt = the conversation up to, not including, that reply;
  rejected = the reply; the user's feedback = that turn, and the next one when the
  user is still dissatisfied with the following reply. A better reply is then
  written under the user's stated preferences (`generate.py`).
* **Unpaired labels** (KTO): every reply the user reacted to, True for SAT, False
  for DSAT.
* **Natural pairs**, no generation needed:
  - `corrected`: a DSAT reply against the reply after the user's correction that
    then drew SAT. The two replies answer different prompts, and the pair says so:
    `prompt` is the rejected reply's, `chosen_prompt` the chosen one's (with the
    correction); filter on `kind` where that matters.
  - `pairwise` / `regenerated`: a reply shown beside alternatives with the user's
    choice (`preferred`: IFLLM's side-by-side, HH-RLHF), or a regeneration the user
    kept against the reply it replaced (a `regenerate` event on the message).
  - `ranked`: OASST siblings ranked by volunteers: the best against each worse one.
    Siblings sit on different root-to-leaf paths, so `RankedSiblings` gathers a
    tree's paths before pairing them (trees arrive contiguously from the reader).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wildfeedback.schema import ChatTurn, Conversation, Dropped, Message, PreferencePair, Signal, UnpairedExample
from wildfeedback.signals.labels import candidate_turns


def chat_turns(messages: Sequence[Message]) -> list[ChatTurn]:
    return [ChatTurn(role=m.role, content=m.content) for m in messages]


def stable_id(*parts: object) -> str:
    return hashlib.blake2b("\x00".join(str(p) for p in parts).encode(), digest_size=10).hexdigest()


def signals_by_turn(signals: Iterable[Signal]) -> dict[int, Signal]:
    """The last signal given for each user turn of one conversation."""
    return {s.turn_index: s for s in signals}


@dataclass
class Candidate:
    """A reply the user was dissatisfied with: a generated pair's rejected side."""

    conversation: Conversation
    reply_index: int
    feedback_turns: list[int]
    signal: Signal

    @property
    def prompt(self) -> list[ChatTurn]:
        return chat_turns(self.conversation.messages[: self.reply_index])

    @property
    def rejected(self) -> str:
        return self.conversation.messages[self.reply_index].content

    @property
    def feedback(self) -> list[str]:
        return [self.conversation.messages[i].content for i in self.feedback_turns]

    @property
    def key(self) -> tuple[str, int]:
        return self.conversation.id, self.reply_index


def _reactions(conversation: Conversation, signals: dict[int, Signal]) -> list[tuple[Message, Message, Signal]]:
    """(user turn, the reply it reacts to, its signal) in order, for turns that have a signal."""
    out = []
    for turn, reply, _, _ in candidate_turns(conversation):
        signal = signals.get(turn.index)
        if signal is not None:
            out.append((turn, reply, signal))
    return out


def dissatisfied_replies(conversation: Conversation, signals: dict[int, Signal]) -> tuple[list[Candidate], list[Dropped]]:
    candidates, drops = [], []
    reactions = _reactions(conversation, signals)
    for k, (turn, reply, signal) in enumerate(reactions):
        if signal.label != "DSAT":
            continue
        messages = conversation.messages
        if reply.index == 0 or messages[reply.index - 1].role != "user":
            drops.append(Dropped(conversation_id=conversation.id, turn_index=reply.index, kind="candidate",
                                 stage="candidates", reason="prompt does not end with a user turn"))
            continue
        if _prompt_ends_empty(conversation, reply.index):
            drops.append(Dropped(conversation_id=conversation.id, turn_index=reply.index, kind="candidate",
                                 stage="candidates", reason="prompt ends with an empty user turn"))
            continue
        feedback = [turn.index]
        if k + 1 < len(reactions) and reactions[k + 1][2].label == "DSAT":  # still dissatisfied with the next reply
            feedback.append(reactions[k + 1][0].index)
        candidates.append(Candidate(conversation, reply.index, feedback, signal))
    return candidates, drops


def _prompt_ends_empty(conversation: Conversation, reply_index: int) -> bool:
    """Whether the turn a reply answers is empty (the reader keeps empty messages,
    marked metadata.empty): no prompt to train on. An empty reply itself is a
    legitimate rejected side."""
    return reply_index > 0 and not conversation.messages[reply_index - 1].content.strip()


def unpaired_examples(conversation: Conversation, signals: dict[int, Signal]) -> list[UnpairedExample]:
    out = []
    for turn, reply, signal in _reactions(conversation, signals):
        if signal.label == "NEUTRAL" or reply.index == 0 or _prompt_ends_empty(conversation, reply.index):
            continue
        out.append(
            UnpairedExample(
                id=stable_id("unpaired", conversation.id, reply.index),
                prompt=chat_turns(conversation.messages[: reply.index]),
                completion=reply.content,
                label=signal.label == "SAT",
                source=conversation.source,
                conversation_id=conversation.id,
                turn_index=reply.index,
                feedback_turn=turn.index,
                categories=list(signal.categories),
                evidence=signal.evidence,
                confidence=signal.confidence,
                detector=signal.detector,
            )
        )
    return out


def corrected_pairs(conversation: Conversation, signals: dict[int, Signal]) -> list[PreferencePair]:
    """DSAT reply r1, the user's correction, reply r2, then SAT: r2 chosen over r1."""
    reactions = _reactions(conversation, signals)
    out = []
    for (turn, first, bad), (_, second, good) in zip(reactions, reactions[1:], strict=False):
        if bad.label != "DSAT" or good.label != "SAT" or first.index == 0 or second.index != turn.index + 1:
            continue
        if _prompt_ends_empty(conversation, first.index) or not turn.content.strip():  # no prompt, or no correction
            continue
        messages = conversation.messages
        out.append(
            PreferencePair(
                id=stable_id("corrected", conversation.id, first.index, second.index),
                kind="corrected",
                prompt=chat_turns(messages[: first.index]),
                chosen=second.content,
                rejected=first.content,
                chosen_prompt=chat_turns(messages[: second.index]),
                source=conversation.source,
                conversation_id=conversation.id,
                turn_index=first.index,
                feedback_turn=turn.index,
                categories=list(bad.categories),
                evidence=bad.evidence,
                confidence=_both(bad.confidence, good.confidence),
                detector=bad.detector,
                metadata={"chosen_index": second.index, "satisfied_turn": second.index + 1},
            )
        )
    return out


def _both(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a * b


def labelled_pairs(conversation: Conversation) -> list[PreferencePair]:
    """Pairs the source itself labelled: a choice among alternatives, or a kept regeneration."""
    regenerated = {e.message_index for e in conversation.events if e.kind == "regenerate"}
    out = []
    for message in conversation.messages:
        if message.role != "assistant" or not message.alternatives or message.index == 0:
            continue
        replies = [message.content, *(a.content for a in message.alternatives)]
        if message.preferred is not None:
            chosen_at = message.preferred
        elif message.index in regenerated:
            chosen_at = 0  # the reply that stayed; the alternatives are what it replaced
        else:
            continue
        kind = "regenerated" if message.index in regenerated else "pairwise"
        for other, text in enumerate(replies):
            if other == chosen_at or text == replies[chosen_at]:
                continue
            out.append(
                PreferencePair(
                    id=stable_id(kind, conversation.id, message.index, chosen_at, other),
                    kind=kind,
                    prompt=chat_turns(conversation.messages[: message.index]),
                    chosen=replies[chosen_at],
                    rejected=text,
                    source=conversation.source,
                    conversation_id=conversation.id,
                    turn_index=message.index,
                    metadata={"chosen_alternative": chosen_at, "rejected_alternative": other},
                )
            )
    return out


@dataclass
class RankedSiblings:
    """OASST: gathers the paths of one message tree, then pairs each ranked reply set:
    the best-ranked sibling against every worse-ranked one, under their shared prompt."""

    _tree: str | None = None
    _paths: list[Conversation] = field(default_factory=list)
    _done: set[tuple[str, str]] = field(default_factory=set)

    def add(self, conversation: Conversation) -> list[PreferencePair]:
        tree = str(conversation.metadata.get("message_tree_id") or conversation.id)
        out = []
        if tree != self._tree:
            out = self.finish()
            self._tree = tree
        self._paths.append(conversation)
        return out

    def finish(self) -> list[PreferencePair]:
        siblings: dict[str, dict[str, tuple[Conversation, Message]]] = {}
        for path in self._paths:
            for message in path.messages:
                if message.role == "assistant" and message.rank is not None and message.parent_id and message.id:
                    siblings.setdefault(message.parent_id, {})[message.id] = (path, message)
        out = []
        for group in siblings.values():
            ranked = sorted(group.values(), key=lambda pm: pm[1].rank)  # type: ignore[arg-type, return-value]
            (path, best), worse = ranked[0], ranked[1:]
            for _, other in worse:
                key = (best.id or "", other.id or "")
                if other.rank == best.rank or key in self._done:
                    continue
                self._done.add(key)
                out.append(
                    PreferencePair(
                        id=stable_id("ranked", *key),
                        kind="ranked",
                        prompt=chat_turns(path.messages[: best.index]),
                        chosen=best.content,
                        rejected=other.content,
                        source=path.source,
                        conversation_id=path.id,
                        turn_index=best.index,
                        metadata={"chosen_rank": best.rank, "rejected_rank": other.rank,
                                  "chosen_id": best.id, "rejected_id": other.id},
                    )
                )
        self._paths = []
        self._tree = None
        return out
