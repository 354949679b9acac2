"""The IFLLM behaviour logs, streamed from `ifllm_pairwise_behavior.tar.xz`.

The archive is read member by member with `tarfile` (mode `r:xz`); nothing is
unpacked to disk. Members are `user_behavior/<user_id>/<task_id>/<name>.csv`,
headerless, one row per WebGazer tick (~13 Hz), written by the study page's
logger (PHP `implode(',', ...)`, so nothing in a row is escaped):

* `abs_gaze.csv`, `abs_mouse.csv` — 4 fields: `x, y, page_ms, epoch_ms`. x, y are
  viewport coordinates in CSS px (gaze may fall off screen, so negative values
  are real); `page_ms` is a page clock that stops while the tab is hidden;
  `epoch_ms` is the browser's `Date.now()` (UTC). The logger writes every
  `abs_gaze` batch twice, so that file holds each row twice: exact duplicate
  rows are dropped and counted (`duplicates`).
* `rel_gaze_one.csv` / `rel_gaze_two.csv` (gaze over the left / right reply),
  `rel_mouse_left.csv` / `rel_mouse_right.csv` (mouse), or `rel_gaze.csv` /
  `rel_mouse.csv` on a page with one reply — 7 fields:
  `box_x, box_y, "text", char, page_ms, valid, epoch_ms`. box_x, box_y is the
  point inside the reply's box (its scroll included), `-1,-1` when the point is
  outside it; `text` is up to ~20 characters around the point on its line, wrapped
  in double quotes by the page (empty outside the box, or where no character is
  under the point); `char` is the offset of the character under the point in
  the reply's text; `valid` is 1 when WebGazer's face box was green (face found),
  0 otherwise. Members written by the first version of the page (September 2025
  to January 2026, 35 tasks) have 6 fields: no `valid`.
  The quotes around `text` are not escaped: a snippet holding `"` (e.g.
  `"Take Me Home"`) breaks an RFC 4180 CSV reader, which then merges or splits
  rows (Python's `csv` module makes ~1.4k records of 8 to 39 fields out of
  them: the "malformed rows" of the data README). Here a row is read as one
  physical line, the numeric fields anchored at both ends, and the text is
  what lies between; such rows are counted as `repaired`. A row that still does
  not parse (wrong field count, a non-number, bad UTF-8, an empty line) is
  skipped and counted as `rejected`, with its line number and reason.

Rows of the six files of one task come from the same tick when they share
`page_ms`; they are joined on (page_ms, rank among equal page_ms by epoch),
because the logger's concurrent uploads can interleave batches in a file (the
files are not in time order). Rows with no partner in the other files are
counted (`unmatched`) and left out.

A damaged archive (cut short, corrupt compressed bytes, a broken tar header)
raises `ArchiveError` naming the member being read and its byte offset in the
uncompressed tar.
"""

from __future__ import annotations

import lzma
import math
import os
import tarfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wildfeedback.errors import Location, Rejected, WildfeedbackError
from wildfeedback.implicit.traces import TraceArrays

PAIRWISE_FILES = {
    "abs_gaze": "abs", "abs_mouse": "abs",
    "rel_gaze_one": ("gaze", 0), "rel_gaze_two": ("gaze", 1),
    "rel_mouse_left": ("mouse", 0), "rel_mouse_right": ("mouse", 1),
}
SINGLE_FILES = {"abs_gaze": "abs", "abs_mouse": "abs", "rel_gaze": ("gaze", 0), "rel_mouse": ("mouse", 0)}
KNOWN_FILES = {**PAIRWISE_FILES, **SINGLE_FILES}
_DAMAGE = (tarfile.TarError, lzma.LZMAError, EOFError, zlib.error, OSError)


class ArchiveError(WildfeedbackError):
    """The archive itself is damaged: names the archive, the member and the offset."""


@dataclass
class MemberReport:
    """What one CSV member held and what became of each row."""

    member: str
    rows: int = 0
    parsed: int = 0
    repaired: int = 0
    duplicates: int = 0
    rejected: int = 0
    layout: int | None = None  # fields per row: 4 (abs), 7 or 6 (rel)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class ArchiveReport:
    """Totals over the archive, every member's report, and every rejected row."""

    path: str
    members: list[MemberReport] = field(default_factory=list)
    rejected_rows: list[Rejected] = field(default_factory=list)
    skipped_members: list[str] = field(default_factory=list)
    tasks: int = 0
    unmatched: int = 0

    def totals(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for m in self.members:
            for key in ("rows", "parsed", "repaired", "duplicates", "rejected"):
                out[key] += getattr(m, key)
        out["members"] = len(self.members)
        out["skipped_members"] = len(self.skipped_members)
        out["tasks"] = self.tasks
        out["unmatched"] = self.unmatched
        return dict(out)


@dataclass
class TaskTraces:
    """The gaze and mouse traces of one (user, task) session, every reply box together."""

    user_id: str
    task_id: str
    boxes: int
    gaze: TraceArrays
    mouse: TraceArrays
    members: list[MemberReport]
    unmatched: int = 0


# -- rows --------------------------------------------------------------------


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _epoch(text: str) -> float:
    if not text.isdigit():
        raise ValueError(text)
    return float(text)


def parse_abs(line: str) -> tuple[float, float, float, float]:
    """`x, y, page_ms, epoch_ms` -> floats, or ValueError saying what is wrong."""
    parts = line.split(",")
    if len(parts) != 4:
        raise ValueError(f"has {len(parts)} fields, an abs_* row has 4 (x, y, page_ms, epoch_ms)")
    try:
        return _number(parts[0]), _number(parts[1]), _number(parts[2]), _epoch(parts[3])
    except ValueError as bad:
        raise ValueError(f"field {bad} is not a number where one is expected") from None


RelRow = tuple[float, float, str, int, float, int, float, bool]


def parse_rel(line: str, layout: int) -> RelRow:
    """One rel_* row -> (box_x, box_y, text, char, page_ms, valid, epoch_ms, repaired).

    `layout` is 7 (with `valid`) or 6 (without; valid = -1). The text is every
    field between box_y and char joined back with commas, its page-added quotes
    stripped; `repaired` says it held unescaped quotes, or lacked the page's own
    (383 rows of two members hold a bare `20240620}`). `char` is -1 when empty.
    """
    parts = line.split(",")
    tail = layout - 3
    if len(parts) < layout:
        raise ValueError(f"has {len(parts)} fields, a rel_* row of this member has {layout}")
    head = parts[:2]
    text = ",".join(parts[2 : len(parts) - tail])
    char_text, page_text = parts[len(parts) - tail], parts[len(parts) - tail + 1]
    valid_text = parts[-2] if layout == 7 else None
    try:
        box_x, box_y = _number(head[0]), _number(head[1])
        page_ms, epoch = _number(page_text), _epoch(parts[-1])
    except ValueError as bad:
        raise ValueError(f"field {bad} is not a number where one is expected") from None
    if char_text and not char_text.isdigit():
        raise ValueError(f"character offset {char_text!r} is not a whole number")
    if valid_text is not None and valid_text not in ("0", "1"):
        raise ValueError(f"validity flag {valid_text!r} is not 0 or 1")
    quoted = len(text) >= 2 and text[0] == '"' and text[-1] == '"'
    inner = text[1:-1] if quoted else text
    if box_x < 0 and (inner or char_text):
        raise ValueError("point is outside the box (-1) but has text under it")
    valid = -1 if valid_text is None else int(valid_text)
    repaired = '"' in inner or bool(text and not quoted)
    return box_x, box_y, inner, int(char_text) if char_text else -1, page_ms, valid, epoch, repaired


def _layout(lines: list[str]) -> int:
    """7 or 6 fields: decided by the first row that parses under exactly one of them."""
    for line in lines[:200]:
        fits = []
        for layout in (7, 6):
            try:
                parse_rel(line, layout)
                fits.append(layout)
            except ValueError:
                pass
        if len(fits) == 1:
            return fits[0]
    return 7


# -- members -----------------------------------------------------------------


@dataclass
class _Member:
    name: str
    kind: str  # abs_gaze, rel_gaze_one, ...
    report: MemberReport
    columns: dict[str, np.ndarray]
    text: list[str] | None = None


def _decode(data: bytes, where: str, name: str, report: MemberReport,
            rejected: list[Rejected]) -> list[str | None]:
    """The member's lines; a line that is not UTF-8 becomes None (and a rejected row)."""
    try:
        lines: list[str | None] = list(data.decode("utf-8").split("\n"))
    except UnicodeDecodeError:
        lines = []
        for raw in data.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as bad:
                lines.append(None)
                rejected.append(Rejected(Location(f"{where}:{name}", line=len(lines)),
                                         f"not valid UTF-8: byte 0x{raw[bad.start]:02x} at offset {bad.start}", raw))
                report.rejected += 1
    if lines and lines[-1] == "":
        lines.pop()
    if b"\r" in data:
        lines = [line.rstrip("\r") if line is not None else None for line in lines]
    return lines


def _fast_abs(lines: list[str]) -> np.ndarray:
    """All rows at once; ValueError if any row is off (the caller then goes row by row)."""
    if not lines:
        return np.zeros((0, 4))
    if any(line.count(",") != 3 for line in lines):
        raise ValueError("field count")
    table = np.array(",".join(lines).split(","), dtype=np.float64).reshape(-1, 4)
    epoch = table[:, 3]
    if not np.isfinite(table).all() or (epoch != np.floor(epoch)).any() or (epoch < 0).any():
        raise ValueError("values")
    return table


def _fast_rel(lines: list[str], layout: int) -> tuple[np.ndarray, list[str], int]:
    """(table of box_x, box_y, char, page_ms, valid, epoch; texts; repaired count), or ValueError."""
    tail = layout - 3
    heads, texts, tails = [], [], []
    for line in lines:
        left = line.split(",", 2)
        right = left[2].rsplit(",", tail)
        if len(right) != tail + 1:
            raise ValueError("field count")
        heads.append(left[0])
        heads.append(left[1])
        texts.append(right[0])
        tails.extend(right[1:])
    if not lines:
        return np.zeros((0, 6)), [], 0
    xy = np.array(heads, dtype=np.float64).reshape(-1, 2)
    rest = np.array([v or "-1" for v in tails], dtype=np.float64).reshape(-1, tail)
    char, page, epoch = rest[:, 0], rest[:, 1], rest[:, -1]
    valid = rest[:, 2] if layout == 7 else np.full(len(lines), -1.0)
    if (not np.isfinite(xy).all() or not np.isfinite(rest).all() or (char != np.floor(char)).any()
            or (char < -1).any() or (epoch != np.floor(epoch)).any() or (epoch < 0).any()):
        raise ValueError("values")
    if layout == 7 and not np.isin(valid, (0.0, 1.0)).all():
        raise ValueError("validity flag")
    if any(v == "-1" for v in tails[::tail]):
        raise ValueError("a character offset of -1")  # only '' may stand for "none"
    repaired, inner = 0, []
    for text in texts:
        quoted = len(text) >= 2 and text[0] == '"' and text[-1] == '"'
        body = text[1:-1] if quoted else text
        repaired += '"' in body or bool(text and not quoted)
        inner.append(body)
    outside = xy[:, 0] < 0
    if (outside & ((char >= 0) | np.array([bool(t) for t in inner]))).any():
        raise ValueError("text outside the box")
    return np.column_stack([xy, char, page, valid, epoch]), inner, repaired


def parse_member(name: str, kind: str, data: bytes, where: str, rejected: list[Rejected], keep_text: bool) -> _Member:
    """Parse one CSV member's bytes; bad rows go to `rejected` with their line and reason.

    All rows are converted at once when they are all well-formed (the usual
    case); otherwise row by row, so each bad row is named by its line.
    """
    report = MemberReport(name)
    decoded = _decode(data, where, name, report, rejected)
    report.rows = len(decoded)
    present = [line for line in decoded if line is not None]
    unique = list(dict.fromkeys(present))  # the logger writes abs_gaze batches twice
    report.duplicates = len(present) - len(unique)
    is_abs = KNOWN_FILES[kind] == "abs"
    layout = 4 if is_abs else _layout([line for line in unique[:200] if line])
    report.layout = layout
    names = ("x", "y", "page_ms", "epoch") if is_abs else ("box_x", "box_y", "char", "page_ms", "valid", "epoch")
    texts: list[str] = []
    try:
        if is_abs:
            table = _fast_abs(unique)
        else:
            table, texts, report.repaired = _fast_rel(unique, layout)
    except (ValueError, IndexError):
        rows: list[tuple] = []
        texts, report.repaired = [], 0
        first_line = {line: number for number, line in reversed(list(enumerate(decoded, 1))) if line is not None}
        for line in unique:
            try:
                if not line:
                    raise ValueError("is empty")
                if is_abs:
                    rows.append(parse_abs(line))
                else:
                    box_x, box_y, text, char, page_ms, valid, epoch, repaired = parse_rel(line, layout)
                    rows.append((box_x, box_y, char, page_ms, valid, epoch))
                    texts.append(text)
                    report.repaired += repaired
            except ValueError as bad:
                report.rejected += 1
                rejected.append(Rejected(Location(f"{where}:{name}", line=first_line[line]), f"{kind}.csv row {bad}",
                                         line))
        table = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    report.parsed = len(table)
    columns = {n: table[:, i] for i, n in enumerate(names)}
    return _Member(name, kind, report, columns, texts if (keep_text and not is_abs) else None)


def _keys(member: _Member) -> tuple[np.ndarray, list[tuple[float, int]]]:
    """Row order by (page_ms, epoch) and each row's join key (page_ms, rank among equal page_ms)."""
    page, epoch = member.columns["page_ms"], member.columns["epoch"]
    order = np.lexsort((epoch, page))
    keys: list[tuple[float, int]] = []
    previous, rank = None, 0
    for value in page[order].tolist():
        rank = rank + 1 if value == previous else 0
        keys.append((value, rank))
        previous = value
    return order, keys


def _trace(modality: str, boxes: list[_Member], absolute: _Member | None) -> tuple[TraceArrays, int]:
    """Join one modality's per-box rel members (and its abs member) into one trace."""
    base = boxes[0]
    members = boxes[1:] + ([absolute] if absolute is not None else [])
    order = np.lexsort((base.columns["epoch"], base.columns["page_ms"]))
    base_page = base.columns["page_ms"][order]
    partner_orders = [np.lexsort((m.columns["epoch"], m.columns["page_ms"])) for m in members]
    if all(len(o) == len(order) and np.array_equal(m.columns["page_ms"][o], base_page)
           for m, o in zip(members, partner_orders, strict=True)):
        # The usual case: every file holds the same ticks, so sorted rows line up.
        rows, partner_rows = order.tolist(), [o.tolist() for o in partner_orders]
    else:
        order, keys = _keys(base)
        others = []
        for member in members:
            o_order, o_keys = _keys(member)
            others.append(dict(zip(o_keys, o_order.tolist(), strict=True)))
        rows, partner_rows = [], [[] for _ in others]
        for row, key in zip(order.tolist(), keys, strict=True):
            found = [index.get(key) for index in others]
            if any(f is None for f in found):
                continue
            rows.append(row)
            for slot, f in zip(partner_rows, found, strict=True):
                slot.append(f)
    unmatched = sum(len(m.columns["page_ms"]) for m in [base, *members]) - len(rows) * (1 + len(members))
    rows_a = np.array(rows, dtype=np.int64)
    n = len(rows_a)
    box = np.full(n, -1, np.int8)
    box_x, box_y, char = np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1, np.int32)
    text: list[str | None] | None = [None] * n if base.text is not None else None
    for number, member in enumerate(boxes):
        picked = rows_a if number == 0 else np.array(partner_rows[number - 1], dtype=np.int64)
        if n == 0:
            break
        inside = member.columns["box_x"][picked] >= 0
        take = inside & (box < 0)  # boxes do not overlap; the first one wins if they ever did
        box[take] = number
        box_x[take] = member.columns["box_x"][picked][take]
        box_y[take] = member.columns["box_y"][picked][take]
        char[take] = member.columns["char"][picked][take].astype(np.int32)
        if text is not None and member.text is not None:
            for i in np.flatnonzero(take).tolist():
                text[i] = member.text[int(picked[i])] or None
    x = y = None
    if absolute is not None and n:
        abs_rows = np.array(partner_rows[-1], dtype=np.int64)
        x, y = absolute.columns["x"][abs_rows], absolute.columns["y"][abs_rows]
    columns = base.columns
    trace = TraceArrays.build(
        modality,  # type: ignore[arg-type]
        t=columns["epoch"][rows_a] if n else np.zeros(0),
        x=x, y=y, box=box, box_x=box_x, box_y=box_y, char=char,
        valid=columns["valid"][rows_a].astype(np.int8) if n else None,
        visible_ms=columns["page_ms"][rows_a] if n else None,
        text=text,
    )
    return trace, max(unmatched, 0)


def _assemble(user_id: str, task_id: str, members: dict[str, _Member]) -> TaskTraces:
    pairwise = "rel_gaze_one" in members or "rel_gaze_two" in members
    names = PAIRWISE_FILES if pairwise else SINGLE_FILES
    traces, unmatched = {}, 0
    for modality in ("gaze", "mouse"):
        boxes = sorted(((spec[1], members[k]) for k, spec in names.items()
                        if spec != "abs" and spec[0] == modality and k in members), key=lambda item: item[0])
        if not boxes or len(boxes) < (2 if pairwise else 1):
            traces[modality] = TraceArrays.empty(modality)  # type: ignore[arg-type]
            continue
        trace, lost = _trace(modality, [m for _, m in boxes], members.get(f"abs_{modality}"))
        traces[modality] = trace
        unmatched += lost
    return TaskTraces(user_id, task_id, 2 if pairwise else 1, traces["gaze"], traces["mouse"],
                      [m.report for m in members.values()], unmatched)


def _complete(members: dict[str, _Member]) -> bool:
    return set(PAIRWISE_FILES) <= set(members) or set(SINGLE_FILES) <= set(members)


def read_behavior_archive(path: str | os.PathLike[str], report: ArchiveReport | None = None,
                          keep_text: bool = True) -> Iterator[TaskTraces]:
    """Yield one `TaskTraces` per (user, task) directory, as soon as its files are read.

    `report` (optional) collects every member's counts and every rejected row.
    Raises `ArchiveError` when the archive itself is damaged.
    """
    path = Path(path)
    report = report if report is not None else ArchiveReport(str(path))
    pending: dict[tuple[str, str], dict[str, _Member]] = {}
    where = path.name
    try:
        tar = tarfile.open(path, "r:xz")
    except _DAMAGE as error:
        raise ArchiveError(f"{path}: not a readable .tar.xz archive ({type(error).__name__}: {error})") from error
    last, offset = "(start of archive)", 0
    with tar:
        while True:
            try:
                member = tar.next()
            except _DAMAGE as error:
                raise ArchiveError(f"{path}: damaged after member {last} (tar offset {tar.offset}): "
                                   f"{type(error).__name__}: {error}") from error
            if member is None:
                _check_end(tar, path, last)
                break
            if not member.isfile():
                continue
            last, offset = member.name, member.offset_data
            parts = member.name.split("/")
            kind = parts[-1].removesuffix(".csv") if parts[-1].endswith(".csv") else None
            if len(parts) != 4 or parts[0] != "user_behavior" or kind not in KNOWN_FILES:
                report.skipped_members.append(member.name)
                continue
            try:
                stream = tar.extractfile(member)
                data = stream.read() if stream is not None else b""
            except _DAMAGE as error:
                raise ArchiveError(f"{path}: member {member.name} (data at tar offset {offset}) is damaged or cut "
                                   f"short: {type(error).__name__}: {error}") from error
            if len(data) != member.size:
                raise ArchiveError(f"{path}: member {member.name} (data at tar offset {offset}) has {len(data)} "
                                   f"bytes, its header says {member.size}")
            parsed = parse_member(member.name, kind, data, where, report.rejected_rows, keep_text)
            report.members.append(parsed.report)
            key = (parts[1], parts[2])
            pending.setdefault(key, {})[kind] = parsed
            if _complete(pending[key]):
                yield _finish(key, pending.pop(key), report)
    for key in sorted(pending):
        yield _finish(key, pending.pop(key), report)


def _check_end(tar: tarfile.TarFile, path: Path, last: str) -> None:
    """`tarfile` takes an unreadable header after the first as the end of the archive; only zero
    blocks may follow the real end, so anything else there is damage, not the end."""
    try:
        tar.fileobj.seek(tar.offset)  # type: ignore[union-attr]
        while chunk := tar.fileobj.read(1 << 20):  # type: ignore[union-attr]
            if chunk.strip(b"\0"):
                raise ArchiveError(f"{path}: unreadable tar header at offset {tar.offset} after member {last}; "
                                   "the members after it cannot be read")
    except _DAMAGE as error:
        raise ArchiveError(f"{path}: damaged after member {last} (tar offset {tar.offset}): "
                           f"{type(error).__name__}: {error}") from error


def _finish(key: tuple[str, str], members: dict[str, _Member], report: ArchiveReport) -> TaskTraces:
    task = _assemble(key[0], key[1], members)
    report.tasks += 1
    report.unmatched += task.unmatched
    return task
