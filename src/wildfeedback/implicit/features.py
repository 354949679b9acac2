"""Behaviour features of one query: how the user read the replies side by side, and what they did with them.

Everything is computed from `TraceArrays` (a gaze and a mouse trace over the
window in which the replies were on screen) and the conversation's product
events, so a live page's telemetry and the IFLLM logs go through the same code.
Each feature is a small function with a definition simple enough to compute by
hand; `window_features` puts them together under stable names.

Definitions (t in ms; sample i lasts d_i = min(t_{i+1} - t_i, cap), the last
sample lasts min(end - t_i, cap) when the window's end is known, else 0):

* engaged time of reply b: sum of d_i over samples over b. Capping keeps a
  long gap (tab hidden, tracker stalled, user away) from counting as reading.
* attention share of b: engaged(b) / sum of engaged over the replies.
* reading position: char / len(reply) of samples over b with a known character
  offset. Mean, standard deviation (population), reach (the furthest position),
  coverage (the share of the reply's ten equal parts the point visited).
* look-backs: jumps back by more than `lookback_chars` characters between
  consecutive located samples over the same reply (a regression to re-read).
* revisits of b: entries into b right after the point was over another reply
  (off-reply samples in between are ignored); switches: all such entries.
* reviewing phase: the last `review_fraction` of the reading span (first to last
  sample over any reply), i.e. just before the user left the replies to give
  their rating and choice. Its own engaged times and shares, and the last reply
  looked at.
* gaze-mouse agreement: gaze samples paired with the nearest mouse sample
  within `match_ms`; over the pairs where either is over a reply, the share
  where both are over the same one. Per reply: of the gaze samples over b with a
  paired mouse sample, the share with the mouse over b too.
* gaze samples whose tracker flag says the face was not found are not counted
  as over a reply (WebGazer guesses without a face).
* product signals per reply, from events: copies, regenerations, edits, thumbs
  (+1 / -1, the last one wins), dwell seconds (sum of `dwell` event values in ms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wildfeedback.implicit.traces import TraceArrays
from wildfeedback.schema import Conversation

CAP_MS = 1000.0
REVIEW_FRACTION = 0.3
LOOKBACK_CHARS = 80
MATCH_MS = 250.0
BINS = 10
SIDES = ("left", "right")  # box 0, box 1: the order of Message.preferred on a side-by-side pair


# -- time --------------------------------------------------------------------


def sample_durations(t: np.ndarray, cap_ms: float = CAP_MS, end: float | None = None) -> np.ndarray:
    """How long each sample stands for, in ms, gaps capped at `cap_ms`."""
    t = np.asarray(t, dtype=np.float64)
    if len(t) == 0:
        return np.zeros(0)
    tail = 0.0 if end is None else max(end - t[-1], 0.0)
    return np.minimum(np.diff(t, append=t[-1] + tail), cap_ms)


def engaged_seconds(trace: TraceArrays, box: int, cap_ms: float = CAP_MS, end: float | None = None) -> float:
    """Seconds the point spent over reply `box` (gaps capped)."""
    return float(sample_durations(trace.t, cap_ms, end)[trace.box == box].sum() / 1000.0)


def attention_shares(engaged: Sequence[float]) -> list[float]:
    """Each reply's share of the engaged time; NaN for all when no time was spent on any."""
    total = float(sum(engaged))
    return [float(e) / total if total > 0 else math.nan for e in engaged]


def hidden_seconds(trace: TraceArrays) -> float:
    """Time the page was hidden between samples: wall-clock gaps minus the page clock's (which stops when hidden)."""
    if len(trace) < 2 or np.isnan(trace.visible_ms).all():
        return 0.0
    gap = np.diff(trace.t) - np.diff(trace.visible_ms)
    return float(np.nansum(np.clip(gap, 0.0, None)) / 1000.0)


# -- reading position -----------------------------------------------------------


def reading_positions(trace: TraceArrays, box: int, reply_chars: int) -> np.ndarray:
    """Positions in [0, 1] (char / reply length) of the located samples over `box`, in time order."""
    mask = (trace.box == box) & (trace.char >= 0)
    if reply_chars <= 0:
        return np.zeros(0)
    return np.clip(trace.char[mask] / float(reply_chars), 0.0, 1.0)


@dataclass(frozen=True)
class ReadingStats:
    mean: float
    std: float
    reach: float
    coverage: float


def reading_stats(positions: np.ndarray, bins: int = BINS) -> ReadingStats:
    """Mean, population std, furthest point and share of the reply's `bins` parts visited (NaN if none located)."""
    if len(positions) == 0:
        return ReadingStats(math.nan, math.nan, math.nan, math.nan)
    parts = np.minimum((positions * bins).astype(int), bins - 1)
    return ReadingStats(float(positions.mean()), float(positions.std()), float(positions.max()),
                        len(set(parts.tolist())) / bins)


def lookbacks(trace: TraceArrays, box: int, min_chars: int = LOOKBACK_CHARS) -> int:
    """Jumps back by more than `min_chars` between consecutive located samples over `box`."""
    chars = trace.char[(trace.box == box) & (trace.char >= 0)]
    return int((np.diff(chars) < -min_chars).sum())


# -- boxes over time ------------------------------------------------------------


def visits(trace: TraceArrays) -> list[int]:
    """The sequence of replies the point went to, one entry per visit (off-reply samples skipped)."""
    boxes = trace.box[trace.box >= 0].tolist()
    return [b for k, b in enumerate(boxes) if k == 0 or b != boxes[k - 1]]


def revisits(trace: TraceArrays, box: int) -> int:
    """Entries into `box` after the point had been over another reply."""
    return sum(1 for b in visits(trace)[1:] if b == box)


def switches(trace: TraceArrays) -> int:
    """Moves from one reply to another (off-reply samples in between ignored)."""
    return max(len(visits(trace)) - 1, 0)


def side_code(box: int | None) -> float:
    """+1 for the left reply (box 0), -1 for the right (box 1), 0 for none: one signed column for a side."""
    return {0: 1.0, 1: -1.0}.get(box, 0.0) if box is not None else 0.0


def reading_span(traces: Sequence[TraceArrays]) -> tuple[float, float] | None:
    """First and last time any of the traces was over a reply."""
    times = np.concatenate([tr.t[tr.box >= 0] for tr in traces]) if traces else np.zeros(0)
    if len(times) == 0:
        return None
    return float(times.min()), float(times.max())


def review_phase(trace: TraceArrays, span: tuple[float, float] | None, fraction: float = REVIEW_FRACTION) -> TraceArrays:
    """The samples of the last `fraction` of the reading span (inclusive of its last sample)."""
    if span is None:
        return trace.select(np.zeros(len(trace), bool))
    start, end = span
    cut = end - fraction * (end - start)
    return trace.select((trace.t >= cut) & (trace.t <= end))


# -- gaze and mouse together --------------------------------------------------------


def pair_samples(gaze: TraceArrays, mouse: TraceArrays, match_ms: float = MATCH_MS) -> tuple[np.ndarray, np.ndarray]:
    """For each gaze sample, the index of the nearest mouse sample within `match_ms` (-1 if none)."""
    if len(mouse) == 0 or len(gaze) == 0:
        return np.arange(len(gaze)), np.full(len(gaze), -1)
    right = np.clip(np.searchsorted(mouse.t, gaze.t), 0, len(mouse) - 1)
    left = np.clip(right - 1, 0, len(mouse) - 1)
    nearest = np.where(np.abs(mouse.t[left] - gaze.t) <= np.abs(mouse.t[right] - gaze.t), left, right)
    nearest = np.where(np.abs(mouse.t[nearest] - gaze.t) <= match_ms, nearest, -1)
    return np.arange(len(gaze)), nearest


def gaze_mouse_agreement(gaze: TraceArrays, mouse: TraceArrays, boxes: int = 2,
                         match_ms: float = MATCH_MS) -> tuple[float, list[float]]:
    """(overall agreement, per reply: share of gaze samples over it with the mouse over it too)."""
    _, partner = pair_samples(gaze, mouse, match_ms)
    paired = partner >= 0
    g = gaze.box[paired]
    m = mouse.box[partner[paired]] if paired.any() else np.zeros(0, np.int8)
    either = (g >= 0) | (m >= 0)
    overall = float(((g == m) & either).sum() / either.sum()) if either.any() else math.nan
    per_box = []
    for b in range(boxes):
        on = g == b
        per_box.append(float((m[on] == b).mean()) if on.any() else math.nan)
    return overall, per_box


def usable_gaze(trace: TraceArrays) -> TraceArrays:
    """The gaze trace with samples the tracker flagged as faceless taken off every reply."""
    if trace.modality != "gaze" or not (trace.valid == 0).any():
        return trace
    box = np.where(trace.valid == 0, -1, trace.box).astype(np.int8)
    char = np.where(trace.valid == 0, -1, trace.char).astype(np.int32)
    return TraceArrays(trace.modality, trace.t, trace.x, trace.y, box, trace.box_x, trace.box_y, char, trace.valid,
                       trace.visible_ms, trace.text)


# -- product signals --------------------------------------------------------------


PRODUCT_SIGNALS = ("copies", "regenerations", "edits", "thumbs", "dwell_s")


def product_signals(conversation: Conversation, message_index: int) -> list[dict[str, float]]:
    """Per reply of the message (itself, then its alternatives): counts of copy / regenerate / edit
    events, the thumbs (+1 up, -1 down, last one wins, 0 none) and dwell seconds.

    An event concerns a reply when its `message_id` is that reply's id, or, with no
    id, when its `message_index` is the message (then it concerns the message itself).
    """
    message = conversation.messages[message_index]
    ids = [message.id, *(a.id for a in message.alternatives)]
    out = [dict.fromkeys(PRODUCT_SIGNALS, 0.0) for _ in ids]
    if message.thumbs:
        out[0]["thumbs"] = 1.0 if message.thumbs == "up" else -1.0
    for event in sorted(conversation.events, key=lambda e: (e.timestamp is None, e.timestamp)):
        if event.message_id is not None and event.message_id in ids:
            box = ids.index(event.message_id)
        elif event.message_id is None and event.message_index == message_index:
            box = 0
        else:
            continue
        signals = out[box]
        if event.kind == "copy":
            signals["copies"] += 1
        elif event.kind == "regenerate":
            signals["regenerations"] += 1
        elif event.kind == "edit":
            signals["edits"] += 1
        elif event.kind in ("thumbs_up", "thumbs_down"):
            signals["thumbs"] = 1.0 if event.kind == "thumbs_up" else -1.0
        elif event.kind == "dwell" and isinstance(event.value, int | float):
            signals["dwell_s"] += float(event.value) / 1000.0
    return out


# -- one query ----------------------------------------------------------------------


def trace_features(trace: TraceArrays, reply_chars: Sequence[int], end: float | None = None,
                   cap_ms: float = CAP_MS, review_fraction: float = REVIEW_FRACTION,
                   lookback_chars: int = LOOKBACK_CHARS, span: tuple[float, float] | None = None
                   ) -> dict[str, float]:
    """One modality's features of a window: per reply (suffix _left/_right), their left-minus-right
    difference (suffix _diff) and the window-level ones. Names have no modality prefix."""
    boxes = len(reply_chars)
    out: dict[str, float] = {}
    engaged = [engaged_seconds(trace, b, cap_ms, end) for b in range(boxes)]
    shares = attention_shares(engaged)
    review = review_phase(trace, span if span is not None else reading_span([trace]), review_fraction)
    review_engaged = [engaged_seconds(review, b, cap_ms) for b in range(boxes)]
    review_shares = attention_shares(review_engaged)
    per_box: dict[str, list[float]] = {k: [] for k in (
        "engaged_s", "share", "position_mean", "position_std", "reach", "coverage", "lookbacks", "lookback_rate",
        "revisits", "review_engaged_s", "review_share")}
    for b in range(boxes):
        stats = reading_stats(reading_positions(trace, b, reply_chars[b]))
        located = int(((trace.box == b) & (trace.char >= 0)).sum())
        back = lookbacks(trace, b, lookback_chars)
        per_box["engaged_s"].append(engaged[b])
        per_box["share"].append(shares[b])
        per_box["position_mean"].append(stats.mean)
        per_box["position_std"].append(stats.std)
        per_box["reach"].append(stats.reach)
        per_box["coverage"].append(stats.coverage)
        per_box["lookbacks"].append(float(back))
        per_box["lookback_rate"].append(back / (located - 1) if located > 1 else math.nan)
        per_box["revisits"].append(float(revisits(trace, b)))
        per_box["review_engaged_s"].append(review_engaged[b])
        per_box["review_share"].append(review_shares[b])
    for name, values in per_box.items():
        for side, value in zip(SIDES, values, strict=False):
            out[f"{name}_{side}"] = value
        if boxes >= 2:
            out[f"{name}_diff"] = values[0] - values[1]
    sequence = visits(trace)
    review_sequence = visits(review)
    out["switches"] = float(switches(trace))
    out["first_side"] = side_code(sequence[0] if sequence else None)
    out["last_side"] = side_code(sequence[-1] if sequence else None)
    out["review_last_side"] = side_code(review_sequence[-1] if review_sequence else None)
    out["on_replies_s"] = float(sum(engaged))
    return out


def window_features(gaze: TraceArrays, mouse: TraceArrays, reply_chars: Sequence[int], start: float | None = None,
                    end: float | None = None, conversation: Conversation | None = None,
                    message_index: int | None = None, cap_ms: float = CAP_MS,
                    review_fraction: float = REVIEW_FRACTION, lookback_chars: int = LOOKBACK_CHARS,
                    match_ms: float = MATCH_MS) -> dict[str, float]:
    """All behaviour features of one query's window, named `gaze_*`, `mouse_*`, `gaze_mouse_*`,
    `window_*` and (with a conversation) `product_*`."""
    gaze = usable_gaze(gaze)
    span = reading_span([gaze, mouse])
    out: dict[str, float] = {}
    for trace in (gaze, mouse):
        feats = trace_features(trace, reply_chars, end, cap_ms, review_fraction, lookback_chars, span)
        out.update({f"{trace.modality}_{k}": v for k, v in feats.items()})
    overall, per_box = gaze_mouse_agreement(gaze, mouse, len(reply_chars), match_ms)
    out["gaze_mouse_agreement"] = overall
    for side, value in zip(SIDES, per_box, strict=False):
        out[f"gaze_mouse_follows_{side}"] = value
    if len(per_box) >= 2:
        out["gaze_mouse_follows_diff"] = per_box[0] - per_box[1]
    times = [tr.t for tr in (gaze, mouse) if len(tr)]
    first = start if start is not None else (min(float(t[0]) for t in times) if times else math.nan)
    last = end if end is not None else (max(float(t[-1]) for t in times) if times else math.nan)
    out["window_s"] = (last - first) / 1000.0
    out["window_reading_span_s"] = (span[1] - span[0]) / 1000.0 if span else 0.0
    out["window_hidden_s"] = hidden_seconds(gaze if len(gaze) else mouse)
    out["window_gaze_valid_share"] = float((gaze.valid == 1).mean()) if len(gaze) and (gaze.valid >= 0).any() else math.nan
    out["window_samples"] = float(len(gaze) + len(mouse))
    if conversation is not None and message_index is not None:
        signals = product_signals(conversation, message_index)
        for name in PRODUCT_SIGNALS:
            for side, values in zip(SIDES, signals, strict=False):
                out[f"product_{name}_{side}"] = values[name]
            if len(signals) >= 2:
                out[f"product_{name}_diff"] = signals[0][name] - signals[1][name]
    return out
