"""The records every stage reads and writes.

A `Conversation` is the unit that flows through every pipeline: readers produce
it from whatever a log looked like, filters and detectors read it, writers store
it without losing a field. Labels the source carried (annotators' ratings,
thumbs, ranks, a side-by-side preference) stay on the message they are about, so
later stages can use them as ground truth; implicit telemetry (clicks, copies,
mouse and gaze traces) lives in `events`, pointing at the message it concerns.

Timestamps are kept in UTC: an aware value is converted, a naive one is taken as
UTC. That makes the JSONL and Parquet round trips exact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, model_validator

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

EventKind = Literal[
    "thumbs_up",
    "thumbs_down",
    "rating",
    "preference",
    "regenerate",
    "copy",
    "edit",
    "dwell",
    "scroll",
    "click",
    "select",
    "mouse_trace",
    "gaze_trace",
    "other",
]

SCHEMA_VERSION = "wildfeedback/1"


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]


class _Record(BaseModel):
    # Unknown keys are an error, not silently dropped: a typo in a hand-written
    # record must not vanish.
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class Alternative(_Record):
    """Another reply shown for the same turn: the other side of a side-by-side
    comparison, or a regeneration the user saw."""

    content: str
    model: str | None = None
    id: str | None = None
    rating: float | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class Message(_Record):
    role: Role
    content: str
    index: int = Field(ge=0, description="position in the conversation, from 0")
    id: str | None = None
    parent_id: str | None = None
    timestamp: UtcDatetime | None = None
    model: str | None = Field(default=None, description="the model that wrote an assistant message")
    # Labels the source carried about this message.
    rating: float | None = Field(default=None, description="one rating, e.g. the user's own Likert score")
    ratings: list[float] | None = Field(default=None, description="several annotators' ratings")
    thumbs: Literal["up", "down"] | None = None
    rank: int | None = Field(default=None, description="rank among siblings, 0 = best (OASST)")
    alternatives: list[Alternative] = Field(default_factory=list)
    preferred: int | None = Field(
        default=None,
        ge=0,
        description="which reply the user preferred: 0 = this message, k = alternatives[k-1]",
    )
    labels: dict[str, JsonValue] = Field(default_factory=dict, description="any other per-message labels")
    metadata: dict[str, JsonValue] = Field(
        default_factory=dict,
        description='what else the source said about the message; the reader sets "empty": true '
        "on a message whose content is empty or whitespace (kept, as real logs hold them)",
    )


    @model_validator(mode="after")
    def _preferred_points_at_a_reply(self) -> Message:
        if self.preferred is not None and self.preferred > len(self.alternatives):
            raise ValueError(
                f"preferred={self.preferred} but the message has only {len(self.alternatives)} alternative(s)"
            )
        return self


class Event(_Record):
    """One piece of implicit telemetry about a message."""

    kind: EventKind
    message_index: int | None = Field(default=None, ge=0)
    message_id: str | None = None
    value: JsonValue = None
    timestamp: UtcDatetime | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)



class Conversation(_Record):
    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="where it came from: sharegpt, wildchat, uss/MWOZ, ...")
    user_id: str | None = None
    model: str | None = None
    language: str | None = Field(default=None, description="ISO 639 code where known")
    created_at: UtcDatetime | None = None
    messages: list[Message] = Field(min_length=1)
    events: list[Event] = Field(default_factory=list)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


    @model_validator(mode="after")
    def _indices_are_positions(self) -> Conversation:
        for position, message in enumerate(self.messages):
            if message.index != position:
                raise ValueError(f"message at position {position} has index {message.index}")
        for number, event in enumerate(self.events):
            if event.message_index is not None and event.message_index >= len(self.messages):
                raise ValueError(
                    f"event {number} refers to message {event.message_index}, "
                    f"but the conversation has {len(self.messages)} messages"
                )
        return self

    def turns(self, role: Role = "user") -> list[Message]:
        return [m for m in self.messages if m.role == role]

    def to_json(self) -> bytes:
        """One JSONL line's worth, defaults left out (they come back on reading)."""
        return self.__pydantic_serializer__.to_json(self, exclude_defaults=True)



SignalLabel = Literal["SAT", "DSAT", "NEUTRAL"]


class Signal(_Record):
    """A detector's reading of one user turn: was the user satisfied with the reply before it?

    `turn_index` is the index of the user message in `Conversation.messages`; the
    reply it judges is the assistant message just before it. `evidence` quotes the
    user's own words and must be a substring of that turn.
    """

    conversation_id: str
    turn_index: int = Field(ge=0)
    label: SignalLabel
    categories: list[str] = Field(default_factory=list)
    evidence: str | None = None
    rationale: str | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    detector: str
    model: str | None = None
    prompt_version: str | None = None
    source: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class SignalIssue(_Record):
    """Why a detector has no (or a partial) reading of a conversation or turn.

    Model output is bad input too: a reply that is not JSON, a label for a turn
    that does not exist, a quote that is not in the user's words. Each such
    problem is one of these records, written beside the signals and counted, so
    nothing a detector discards vanishes silently.
    """

    conversation_id: str
    turn_index: int | None = None
    detector: str
    kind: str = Field(description="invalid_json, validation, http, timeout, evidence_not_found, unknown_category, ...")
    message: str
    dropped: bool = Field(default=True, description="True when the label was discarded; False for a repaired one")
    reply: str | None = Field(default=None, description="the model's raw reply, shortened")
    model: str | None = None
    prompt_version: str | None = None


class ChatTurn(_Record):
    """One message of a prompt, in the shape chat templates and TRL read."""

    role: Role
    content: str


PairKind = Literal["generated", "regenerated", "ranked", "pairwise", "corrected"]


class PreferencePair(_Record):
    """A chosen and a rejected reply to one prompt, and everything needed to trace it back.

    `kind` says how it was made: `generated` (the user was dissatisfied with
    `rejected`; `chosen` was written under the user's stated preferences),
    `regenerated` (the reply the user kept against one it replaced), `ranked`
    (siblings ranked by people, OASST), `pairwise` (a side-by-side choice, IFLLM /
    HH-RLHF), `corrected` (a reply that drew dissatisfaction against the reply after
    the user's correction that drew satisfaction: that reply answered a longer
    prompt, given in `chosen_prompt`).
    """

    id: str
    kind: PairKind
    prompt: list[ChatTurn] = Field(min_length=1)
    chosen: str
    rejected: str
    chosen_prompt: list[ChatTurn] | None = None
    source: str | None = None
    conversation_id: str
    turn_index: int = Field(ge=0, description="index of the rejected reply in the conversation")
    feedback_turn: int | None = Field(default=None, description="the user turn whose feedback made the pair")
    categories: list[str] = Field(default_factory=list)
    evidence: str | None = None
    preferences: str | None = None
    checklist: list[str] = Field(default_factory=list)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    detector: str | None = None
    generator: str | None = None
    prompt_versions: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class UnpairedExample(_Record):
    """One reply with a thumbs-up or thumbs-down from the conversation itself (KTO's data):
    True where the user was satisfied with it, False where dissatisfied."""

    id: str
    prompt: list[ChatTurn] = Field(min_length=1)
    completion: str
    label: bool
    source: str | None = None
    conversation_id: str
    turn_index: int = Field(ge=0, description="index of the reply in the conversation")
    feedback_turn: int | None = None
    categories: list[str] = Field(default_factory=list)
    evidence: str | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    detector: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class Dropped(_Record):
    """A candidate the preference stages set aside, and why: every drop is counted and kept."""

    conversation_id: str
    turn_index: int | None = None
    kind: str = Field(description="what was dropped: pair, unpaired, candidate")
    stage: str
    reason: str
    detail: str | None = None


# -- implicit telemetry: the layout of trace events ----------------------------

TraceModality = Literal["gaze", "mouse"]
TRACE_COLUMNS: tuple[str, ...] = ("t", "x", "y", "box", "box_x", "box_y", "char", "text", "valid", "visible_ms")


class TraceSample(_Record):
    """One sample of a gaze or mouse trace over the replies on screen.

    This is the unit a live collector sends and the IFLLM logs hold (one WebGazer
    tick, ~13 Hz), so the same features run on both. `box` says which reply the
    point is over, with the numbering of `Message.preferred`: 0 = the message the
    event points at, k = its `alternatives[k-1]`; None = over neither (the query
    box, the rating form, off screen). `char` is the offset, in that reply's
    `content`, of the character under the point; `text` the few characters around
    it as the page rendered them (used to check which reply was on screen).
    """

    t: float = Field(description="when, in ms since the Unix epoch (UTC)")
    x: float | None = Field(default=None, description="viewport x in CSS px; None where the tracker had no estimate")
    y: float | None = None
    box: int | None = Field(default=None, ge=0, description="0 = the message, k = alternatives[k-1], None = neither")
    box_x: float | None = Field(default=None, description="position inside the reply's box, px (box scroll included)")
    box_y: float | None = None
    char: int | None = Field(default=None, ge=0, description="character offset in the reply's content under the point")
    text: str | None = None
    valid: bool | None = Field(default=None, description="the tracker's own quality flag (WebGazer: face found)")
    visible_ms: float | None = Field(
        default=None, description="page clock that stops while the tab is hidden (ms); gaps in it against t are hidden time"
    )


class Trace(_Record):
    """A whole trace as columns: the `value` of a `gaze_trace` or `mouse_trace` Event.

    Columnar because a minute of reading is ~800 samples: one list per
    `TraceSample` field, all the same length, samples in time order. `text` may be
    left out (None) to keep records small once the trace has been checked against
    the replies.
    """

    modality: TraceModality
    t: list[float]
    x: list[float | None]
    y: list[float | None]
    box: list[int | None]
    box_x: list[float | None]
    box_y: list[float | None]
    char: list[int | None]
    text: list[str | None] | None = None
    valid: list[bool | None]
    visible_ms: list[float | None]

    @model_validator(mode="after")
    def _columns_line_up(self) -> Trace:
        n = len(self.t)
        for name in TRACE_COLUMNS:
            column = getattr(self, name)
            if column is not None and len(column) != n:
                raise ValueError(f"trace column {name!r} has {len(column)} values, t has {n}")
        if any(b is not None and b < 0 for b in self.box):
            raise ValueError("trace column 'box' holds a negative reply number")
        if any(later < earlier for earlier, later in zip(self.t, self.t[1:], strict=False)):
            raise ValueError("trace samples are not in time order")
        return self

    def __len__(self) -> int:
        return len(self.t)

    def samples(self) -> list[TraceSample]:
        texts = self.text if self.text is not None else [None] * len(self.t)
        return [
            TraceSample(t=t, x=x, y=y, box=b, box_x=bx, box_y=by, char=c, text=s, valid=v, visible_ms=vm)
            for t, x, y, b, bx, by, c, s, v, vm in zip(
                self.t, self.x, self.y, self.box, self.box_x, self.box_y, self.char, texts, self.valid,
                self.visible_ms, strict=True,
            )
        ]

    @classmethod
    def from_samples(cls, modality: TraceModality, samples: list[TraceSample], keep_text: bool = True) -> Trace:
        ordered = sorted(samples, key=lambda s: s.t)
        columns: dict[str, object] = {name: [getattr(s, name) for s in ordered] for name in TRACE_COLUMNS}
        if not keep_text:
            columns["text"] = None
        return cls(modality=modality, **columns)  # type: ignore[arg-type]
