"""Every behaviour feature on a small hand-made trace, against values worked out by hand.

The trace: two replies side by side, left 100 characters long, right 200.

    sample   0    1    2    3     4     5     6     7
    t (ms)   0    100  200  300   2300  2400  2500  2600
    box      L    L    L    R     R     -     L     L
    char     10   30   90   50    150   -     5     -
    visible  0    100  200  300   800   900   1000  1100   (1.5 s hidden between 300 and 2300)

Durations with the 1 s cap: 100, 100, 100, min(2000, 1000) = 1000, 100, 100, 100, 0.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from wildfeedback.implicit.features import (
    attention_shares,
    engaged_seconds,
    gaze_mouse_agreement,
    hidden_seconds,
    lookbacks,
    product_signals,
    reading_positions,
    reading_span,
    reading_stats,
    review_phase,
    revisits,
    sample_durations,
    side_code,
    switches,
    trace_features,
    usable_gaze,
    visits,
    window_features,
)
from wildfeedback.implicit.traces import TraceArrays
from wildfeedback.schema import Conversation, Event, Trace

L, R, N = 0, 1, -1
REPLY_CHARS = [100, 200]


def gaze() -> TraceArrays:
    return TraceArrays.build(
        "gaze",
        t=np.array([0, 100, 200, 300, 2300, 2400, 2500, 2600], float),
        box=[L, L, L, R, R, N, L, L],
        char=[10, 30, 90, 50, 150, -1, 5, -1],
        valid=[1] * 8,
        visible_ms=[0, 100, 200, 300, 800, 900, 1000, 1100],
    )


def mouse() -> TraceArrays:
    return TraceArrays.build("mouse", t=np.array([0, 150, 320, 2300, 2550], float), box=[L, L, R, N, L])


def test_durations_cap_long_gaps_and_use_the_window_end():
    assert sample_durations(gaze().t).tolist() == [100, 100, 100, 1000, 100, 100, 100, 0]
    assert sample_durations(gaze().t, end=2700).tolist()[-1] == 100
    assert sample_durations(gaze().t, cap_ms=50).tolist() == [50, 50, 50, 50, 50, 50, 50, 0]
    assert sample_durations(np.zeros(0)).tolist() == []


def test_engaged_time_and_attention_share():
    g = gaze()
    left, right = engaged_seconds(g, L), engaged_seconds(g, R)
    assert left == pytest.approx(0.4)  # 100 + 100 + 100 + 100 + 0 ms
    assert right == pytest.approx(1.1)  # 1000 (capped) + 100 ms
    assert engaged_seconds(g, L, end=2700) == pytest.approx(0.5)
    assert attention_shares([left, right]) == pytest.approx([0.4 / 1.5, 1.1 / 1.5])
    assert all(math.isnan(s) for s in attention_shares([0.0, 0.0]))


def test_reading_position_completion_and_variance():
    g = gaze()
    assert reading_positions(g, L, 100).tolist() == pytest.approx([0.10, 0.30, 0.90, 0.05])
    left = reading_stats(reading_positions(g, L, 100))
    assert left.mean == pytest.approx(0.3375)
    assert left.std == pytest.approx(math.sqrt(0.11421875))  # population std of .1 .3 .9 .05
    assert left.reach == pytest.approx(0.9)
    assert left.coverage == pytest.approx(0.4)  # tenths 1, 3, 9, 0
    right = reading_stats(reading_positions(g, R, 200))
    assert (right.mean, right.std, right.reach, right.coverage) == pytest.approx((0.5, 0.25, 0.75, 0.2))
    empty = reading_stats(reading_positions(g, 5, 100))
    assert all(math.isnan(v) for v in (empty.mean, empty.std, empty.reach, empty.coverage))


def test_look_backs_need_a_jump_of_more_than_the_threshold():
    g = gaze()
    assert lookbacks(g, L) == 1  # 90 -> 5 is back 85 characters
    assert lookbacks(g, L, min_chars=85) == 0
    assert lookbacks(g, L, min_chars=50) == 1
    assert lookbacks(g, R) == 0


def test_visits_revisits_switches_and_sides():
    g = gaze()
    assert visits(g) == [L, R, L]
    assert switches(g) == 2
    assert revisits(g, L) == 1 and revisits(g, R) == 1
    assert [side_code(L), side_code(R), side_code(None)] == [1.0, -1.0, 0.0]


def test_reviewing_phase_is_the_end_of_the_reading_span():
    g = gaze()
    span = reading_span([g])
    assert span == (0.0, 2600.0)
    review = review_phase(g, span, 0.3)  # from 2600 - 0.3 * 2600 = 1820
    assert review.t.tolist() == [2300, 2400, 2500, 2600]
    assert engaged_seconds(review, L) == pytest.approx(0.1) and engaged_seconds(review, R) == pytest.approx(0.1)
    assert len(review_phase(g, None)) == 0


def test_hidden_time_from_the_page_clock():
    assert hidden_seconds(gaze()) == pytest.approx(1.5)
    assert hidden_seconds(mouse()) == 0.0  # no page clock


def test_gaze_mouse_agreement():
    overall, per_reply = gaze_mouse_agreement(gaze(), mouse())
    # pairs: (L,L) (L,L) (L,L) (R,R) (R,-) (-,-) excluded (L,L) (L,L): 6 agree of 7
    assert overall == pytest.approx(6 / 7)
    assert per_reply == pytest.approx([1.0, 0.5])
    far = TraceArrays.build("mouse", t=np.array([10_000.0]), box=[L])
    overall, per_reply = gaze_mouse_agreement(gaze(), far)
    assert math.isnan(overall) and all(math.isnan(v) for v in per_reply)


def test_faceless_gaze_samples_are_off_the_replies():
    g = TraceArrays.build("gaze", t=np.array([0.0, 100.0, 200.0]), box=[L, L, R], char=[1, 2, 3], valid=[1, 0, 1])
    usable = usable_gaze(g)
    assert usable.box.tolist() == [L, N, R] and usable.char.tolist() == [1, -1, 3]
    m = TraceArrays.build("mouse", t=np.array([0.0]), box=[L], valid=[0])
    assert usable_gaze(m) is m  # the camera flag says nothing about the mouse


def test_trace_features_names_and_values():
    f = trace_features(gaze(), REPLY_CHARS)
    assert f["engaged_s_left"] == pytest.approx(0.4) and f["engaged_s_right"] == pytest.approx(1.1)
    assert f["engaged_s_diff"] == pytest.approx(-0.7)
    assert f["share_left"] == pytest.approx(0.4 / 1.5)
    assert f["lookbacks_left"] == 1 and f["lookback_rate_left"] == pytest.approx(1 / 3)
    assert f["lookback_rate_right"] == 0.0  # two located samples, no jump back
    assert f["revisits_left"] == 1 and f["switches"] == 2
    assert f["first_side"] == 1.0 and f["last_side"] == 1.0 and f["review_last_side"] == 1.0
    assert f["review_share_left"] == pytest.approx(0.5)
    assert f["coverage_diff"] == pytest.approx(0.4 - 0.2)
    assert f["on_replies_s"] == pytest.approx(1.5)


def test_window_features_put_it_together():
    f = window_features(gaze(), mouse(), REPLY_CHARS, start=0.0, end=3000.0)
    assert f["gaze_engaged_s_left"] == pytest.approx(0.8)  # the last sample lasts until the end: +400 ms
    assert f["mouse_engaged_s_left"] == pytest.approx((150 + 170 + 450) / 1000)  # 0-150, 150-320, 2550-3000
    assert f["gaze_mouse_agreement"] == pytest.approx(6 / 7)
    assert f["window_s"] == pytest.approx(3.0)
    assert f["window_reading_span_s"] == pytest.approx(2.6)  # gaze 0 .. mouse and gaze at 2550 / 2600
    assert f["window_hidden_s"] == pytest.approx(1.5)
    assert f["window_gaze_valid_share"] == 1.0
    assert f["window_samples"] == 13
    assert not any(name.startswith("product_") for name in f)


def conversation() -> Conversation:
    at = lambda s: datetime(2025, 1, 1, 0, 0, s, tzinfo=UTC)  # noqa: E731
    return Conversation.model_validate({
        "id": "c", "source": "live",
        "messages": [
            {"role": "user", "content": "q", "index": 0},
            {"role": "assistant", "content": "left", "index": 1, "id": "a1",
             "alternatives": [{"content": "right", "id": "a1-r2"}]},
            {"role": "user", "content": "q2", "index": 2},
            {"role": "assistant", "content": "next", "index": 3, "id": "a3"},
        ],
        "events": [
            {"kind": "copy", "message_id": "a1"},
            {"kind": "copy", "message_index": 1},
            {"kind": "regenerate", "message_id": "a1-r2"},
            {"kind": "thumbs_up", "message_id": "a1-r2", "timestamp": at(1)},
            {"kind": "thumbs_down", "message_id": "a1-r2", "timestamp": at(2)},
            {"kind": "dwell", "message_id": "a1", "value": 1500},
            {"kind": "edit", "message_index": 1, "message_id": "a1"},
            {"kind": "copy", "message_id": "a3"},
            {"kind": "copy", "message_index": 3},
        ],
    })


def test_product_signals_per_reply():
    left, right = product_signals(conversation(), 1)
    assert left == {"copies": 2, "regenerations": 0, "edits": 1, "thumbs": 0, "dwell_s": 1.5}
    assert right == {"copies": 0, "regenerations": 1, "edits": 0, "thumbs": -1.0, "dwell_s": 0}  # last thumb wins
    (only,) = product_signals(conversation(), 3)
    assert only["copies"] == 2
    f = window_features(gaze(), mouse(), REPLY_CHARS, conversation=conversation(), message_index=1)
    assert f["product_copies_diff"] == 2 and f["product_thumbs_right"] == -1.0


def test_features_are_the_same_from_schema_events():
    """A trace stored as an Event (and read back from JSON) gives the same features as the arrays."""
    events = [Event(kind=f"{tr.modality}_trace", message_index=1, value=tr.to_trace().model_dump(mode="json"))
              for tr in (gaze(), mouse())]
    restored = [Event.model_validate_json(e.model_dump_json()) for e in events]
    g, m = (TraceArrays.from_event(e) for e in restored)
    assert Trace.model_validate(restored[0].value).samples()[3].box == R
    before = window_features(gaze(), mouse(), REPLY_CHARS, 0.0, 3000.0)
    after = window_features(g, m, REPLY_CHARS, 0.0, 3000.0)
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert (math.isnan(value) and math.isnan(after[name])) or value == pytest.approx(after[name]), name
    with pytest.raises(ValueError, match="not a trace"):
        TraceArrays.from_event(Event(kind="copy"))
