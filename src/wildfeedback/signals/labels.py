"""Turn-level SAT / DSAT / NEUTRAL labels from the ground truth each real source carries.

A labelled example is one user turn that follows an assistant reply: the
student detector reads (reply, user turn) and predicts how satisfied the user
was with the reply. The rules, per source:

* **USS** (MWOZ, SGD, ReDial, CCPE): annotators rate each user turn 1-5 for
  satisfaction with the system turn just before. Rule: the **rounded mean**
  rating — mean <= 2.5 -> DSAT, mean >= 3.5 -> SAT, otherwise NEUTRAL. (A plain
  "mean < 3" rule turns a single dissenting 2 among four 3s into DSAT; the
  rounded mean asks for a real lean of the annotators, the convention of the
  USS paper's 5-point labels.) User turns with no assistant turn anywhere before
  them (the opening turn of MWOZ / SGD and of some ReDial dialogues) rate nothing
  and are not examples; a user turn right after another user turn is read
  against the latest assistant turn.
  Conversation label (`uss_conversation_label`): the label of the first
  non-NEUTRAL example turn, NEUTRAL if all are neutral (SPUR's rule).
* **IFLLM**: the user rated each response 1-5 (Likert) and then, in the same
  session, asked their next question. The next user turn is the example and the
  reply before it is the context: Likert <= 2 -> DSAT, >= 4 -> SAT, 3 -> NEUTRAL.
  On pairwise tasks the user saw two replies; the one they preferred (if stated)
  is the context and its Likert gives the label; without a preference, the left
  one. Responses without a Likert give no example.
* **OASST**: a prompter's follow-up after an assistant reply. The votes are
  other volunteers' (not the follow-up writer's), so the labels are weak and
  asymmetric: DSAT if the reply got more -1 than +1 votes; SAT if it got more +1
  than -1 votes and ranked best among its siblings (rank 0, or it had none);
  otherwise NEUTRAL. Each follow-up message counts once even though it appears
  on several root-to-leaf paths.

None of these sources labels *why* (rubric categories), so examples carry a
label only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from wildfeedback.schema import Conversation, Event, Message, SignalLabel

LABELS: tuple[SignalLabel, ...] = ("SAT", "DSAT", "NEUTRAL")


@dataclass(frozen=True)
class LabelledTurn:
    conversation_id: str
    source: str
    turn_index: int  # index of the user message in Conversation.messages
    context: str  # the assistant reply the user turn reacts to
    text: str  # the user turn
    label: SignalLabel
    previous_user: str = ""  # the user's turn before the reply, if any
    position: int = 1  # 1 = first user turn after a reply, 2 = second, ...
    categories: tuple[str, ...] = ()  # rubric categories, where the labels name them


def rating_label(ratings: Iterable[float]) -> SignalLabel:
    """USS rule: rounded mean of the annotators' 1-5 ratings, <= 2.5 DSAT, >= 3.5 SAT."""
    values = list(ratings)
    if not values:
        raise ValueError("no ratings")
    mean = sum(values) / len(values)
    if mean <= 2.5:
        return "DSAT"
    if mean >= 3.5:
        return "SAT"
    return "NEUTRAL"


def likert_label(likert: float) -> SignalLabel:
    """IFLLM rule: the user's own Likert, <= 2 DSAT, >= 4 SAT, 3 NEUTRAL."""
    if likert <= 2:
        return "DSAT"
    if likert >= 4:
        return "SAT"
    return "NEUTRAL"


def oasst_label(reply: Message) -> SignalLabel:
    emojis = reply.labels.get("emojis") or {}
    up = int(emojis.get("+1", 0)) if isinstance(emojis, dict) else 0
    down = int(emojis.get("-1", 0)) if isinstance(emojis, dict) else 0
    if down > up:
        return "DSAT"
    if up > down and (reply.rank is None or reply.rank == 0):
        return "SAT"
    return "NEUTRAL"


def candidate_turns(conversation: Conversation) -> Iterator[tuple[Message, Message, str, int]]:
    """(user turn, the latest assistant reply before it, the user's previous turn, position) for
    every user turn that comes after some assistant reply: the turns a detector reads. A user
    turn right after another user turn (chat-style ReDial) still reacts to the latest reply."""
    position = 0
    reply: Message | None = None
    previous_user = ""
    for message in conversation.messages:
        if message.role == "assistant":
            reply = message
        elif message.role == "user":
            if reply is not None:
                position += 1
                yield message, reply, previous_user, position
            previous_user = message.content


def uss_examples(conversation: Conversation) -> list[LabelledTurn]:
    out = []
    for turn, reply, previous_user, position in candidate_turns(conversation):
        if not turn.ratings:
            continue
        out.append(
            LabelledTurn(
                conversation.id, conversation.source, turn.index, reply.content, turn.content,
                rating_label(turn.ratings), previous_user, position,
            )
        )
    return out


def uss_conversation_label(conversation: Conversation) -> SignalLabel:
    """The first non-NEUTRAL example turn's label; NEUTRAL when every turn is neutral."""
    return first_non_neutral([e.label for e in uss_examples(conversation)])


def first_non_neutral(labels: Iterable[SignalLabel]) -> SignalLabel:
    return next((label for label in labels if label != "NEUTRAL"), "NEUTRAL")


def ifllm_examples(conversation: Conversation) -> list[LabelledTurn]:
    out = []
    for turn, reply, previous_user, position in candidate_turns(conversation):
        context, likert = reply.content, reply.rating
        if reply.preferred is not None and reply.preferred > 0:
            alternative = reply.alternatives[reply.preferred - 1]
            context, likert = alternative.content, alternative.rating
        if likert is None:
            continue
        out.append(
            LabelledTurn(
                conversation.id, conversation.source, turn.index, context, turn.content,
                likert_label(likert), previous_user, position,
            )
        )
    return out


def oasst_examples(conversations: Iterable[Conversation]) -> list[LabelledTurn]:
    out, seen = [], set()
    for conversation in conversations:
        for turn, reply, previous_user, position in candidate_turns(conversation):
            key = turn.id or (conversation.id, turn.index)
            if key in seen:
                continue
            seen.add(key)
            out.append(
                LabelledTurn(
                    conversation.id, conversation.source, turn.index, reply.content, turn.content,
                    oasst_label(reply), previous_user, position,
                )
            )
    return out


def product_feedback_label(reply: Message, events: Iterable[Event] = ()) -> SignalLabel | None:
    """A product's own feedback on a reply: thumbs (on the message or as events), or
    a 1-5 rating. Down / <= 2 -> DSAT, up / >= 4 -> SAT, 3 -> NEUTRAL; None: no feedback."""
    thumbs = [reply.thumbs] if reply.thumbs else []
    ratings = [reply.rating] if reply.rating is not None else []
    for event in events:
        if event.message_index != reply.index:
            continue
        if event.kind in ("thumbs_up", "thumbs_down"):
            thumbs.append("up" if event.kind == "thumbs_up" else "down")
        elif event.kind == "rating" and isinstance(event.value, int | float):
            ratings.append(float(event.value))
    if "down" in thumbs:
        return "DSAT"
    if "up" in thumbs:
        return "SAT"
    if ratings:
        return likert_label(sum(ratings) / len(ratings))
    return None


def product_examples(conversation: Conversation) -> list[LabelledTurn]:
    """Any source: the user turn after a reply that got thumbs or a rating takes that label."""
    out = []
    for turn, reply, previous_user, position in candidate_turns(conversation):
        label = product_feedback_label(reply, conversation.events)
        if label is not None:
            out.append(
                LabelledTurn(
                    conversation.id, conversation.source, turn.index, reply.content, turn.content,
                    label, previous_user, position,
                )
            )
    return out


def examples_from(conversations: Iterable[Conversation]) -> list[LabelledTurn]:
    """Labelled examples from any mix of sources: the rules above for USS, IFLLM and
    OASST; thumbs or ratings on replies for any other (`product_examples`). Sources
    with no such ground truth give none."""
    out: list[LabelledTurn] = []
    oasst: list[Conversation] = []
    for conversation in conversations:
        if conversation.source.startswith("uss/"):
            out.extend(uss_examples(conversation))
        elif conversation.source == "ifllm":
            out.extend(ifllm_examples(conversation))
        elif conversation.source == "oasst":
            oasst.append(conversation)
        else:
            out.extend(product_examples(conversation))
    out.extend(oasst_examples(oasst))
    return out


def conversation_label(conversation: Conversation) -> SignalLabel | None:
    """A whole conversation's label from its ground truth: the first non-NEUTRAL
    labelled turn's (SPUR's rule); for a conversation with only an overall rating
    (USS's OVERALL row), that rating; None when it carries no feedback at all."""
    labels = [e.label for e in examples_from([conversation])]
    if labels:
        return first_non_neutral(labels)
    overall = conversation.metadata.get("overall_ratings") if conversation.metadata else None
    if isinstance(overall, list) and overall and all(isinstance(v, int | float) for v in overall):
        return rating_label(overall)  # type: ignore[arg-type]
    return None


def counts(examples: Iterable[LabelledTurn]) -> dict[str, dict[str, int]]:
    """{source: {label: n}} with a "total" per source."""
    table: dict[str, Counter[str]] = {}
    for example in examples:
        table.setdefault(example.source, Counter())[example.label] += 1
    return {s: {**{label: c[label] for label in LABELS}, "total": sum(c.values())} for s, c in sorted(table.items())}
