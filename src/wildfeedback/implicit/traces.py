"""Traces as numpy columns: what the features compute on.

A `Trace` (schema) is JSON-friendly lists; features want arrays, missing values
as NaN / -1, and cheap slicing by time. `TraceArrays` is that view, converted
both ways, so a trace read from the IFLLM logs, one received from a live page and
one stored in a Parquet record all go through the same feature code.

Conventions: `t` in ms since the epoch (float64, sorted); `box` is -1 where the
point is over no reply; `char` is -1 where no character was under the point;
`valid` is 1 / 0 for the tracker's own quality flag and -1 where unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from wildfeedback.schema import Event, Trace, TraceModality


def _floats(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _ints(values: list[int | None], dtype: type = np.int32) -> np.ndarray:
    return np.array([-1 if v is None else v for v in values], dtype=dtype)


def _optional(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


@dataclass(frozen=True)
class TraceArrays:
    modality: TraceModality
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    box: np.ndarray
    box_x: np.ndarray
    box_y: np.ndarray
    char: np.ndarray
    valid: np.ndarray
    visible_ms: np.ndarray
    text: list[str | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.t)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "modality" and value is not None and len(value) != n:
                raise ValueError(f"trace column {f.name} has {len(value)} values, t has {n}")

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls, modality: TraceModality) -> TraceArrays:
        return cls.build(modality, t=np.zeros(0))

    @classmethod
    def build(cls, modality: TraceModality, t: np.ndarray, **columns: object) -> TraceArrays:
        """Arrays from whichever columns are given; the rest are missing. Samples are put in time order."""
        n = len(t)
        defaults = {
            "x": np.full(n, np.nan), "y": np.full(n, np.nan), "box": np.full(n, -1, np.int8),
            "box_x": np.full(n, np.nan), "box_y": np.full(n, np.nan), "char": np.full(n, -1, np.int32),
            "valid": np.full(n, -1, np.int8), "visible_ms": np.full(n, np.nan),
        }
        dtypes = {"box": np.int8, "char": np.int32, "valid": np.int8}
        values: dict[str, object] = {}
        for name, default in defaults.items():
            given = columns.get(name)
            values[name] = default if given is None else np.asarray(given, dtype=dtypes.get(name, np.float64))
        t = np.asarray(t, dtype=np.float64)
        order = np.argsort(t, kind="stable")
        text = columns.get("text")
        sorted_text = [text[i] for i in order] if text is not None else None  # type: ignore[index]
        return cls(modality, t[order], text=sorted_text,
                   **{k: v[order] for k, v in values.items()})  # type: ignore[index]

    @classmethod
    def from_trace(cls, trace: Trace) -> TraceArrays:
        return cls(
            trace.modality,
            t=np.asarray(trace.t, dtype=np.float64),
            x=_floats(trace.x),
            y=_floats(trace.y),
            box=_ints(trace.box, np.int8),
            box_x=_floats(trace.box_x),
            box_y=_floats(trace.box_y),
            char=_ints(trace.char),
            valid=np.array([-1 if v is None else int(v) for v in trace.valid], dtype=np.int8),
            visible_ms=_floats(trace.visible_ms),
            text=list(trace.text) if trace.text is not None else None,
        )

    @classmethod
    def from_event(cls, event: Event) -> TraceArrays:
        if event.kind not in ("gaze_trace", "mouse_trace"):
            raise ValueError(f"event kind {event.kind!r} is not a trace")
        return cls.from_trace(Trace.model_validate(event.value))

    def to_trace(self, keep_text: bool = False) -> Trace:
        return Trace(
            modality=self.modality,
            t=[float(v) for v in self.t],
            x=[_optional(v) for v in self.x],
            y=[_optional(v) for v in self.y],
            box=[None if b < 0 else int(b) for b in self.box],
            box_x=[_optional(v) for v in self.box_x],
            box_y=[_optional(v) for v in self.box_y],
            char=[None if c < 0 else int(c) for c in self.char],
            text=list(self.text) if keep_text and self.text is not None else None,
            valid=[None if v < 0 else bool(v) for v in self.valid],
            visible_ms=[_optional(v) for v in self.visible_ms],
        )

    def select(self, mask: np.ndarray) -> TraceArrays:
        text = [s for s, keep in zip(self.text, mask, strict=True) if keep] if self.text is not None else None
        return TraceArrays(self.modality, self.t[mask], self.x[mask], self.y[mask], self.box[mask], self.box_x[mask],
                           self.box_y[mask], self.char[mask], self.valid[mask], self.visible_ms[mask], text)

    def window(self, start: float, end: float) -> TraceArrays:
        """Samples with start <= t < end (ms since the epoch)."""
        lo, hi = np.searchsorted(self.t, [start, end], side="left")
        return self.select(np.r_[np.zeros(lo, bool), np.ones(hi - lo, bool), np.zeros(len(self.t) - hi, bool)])
