"""The run report as one self-contained HTML file.

The file is meant to be mailed, attached to a ticket or opened from a CI artefact,
so it fetches nothing: CSS is inline and the plots are inline SVG drawn by
matplotlib from numbers. Everything else in it (conversations, feedback, category
names, settings) came from users or models, so it is data, never markup: the
Jinja2 environment autoescapes, the evidence highlight is three separately escaped
parts around a `<mark>`, plot text is escaped by matplotlib's SVG writer, and a
Content-Security-Policy in the page forbids scripts and fetches in case anything
slips through.
"""

from __future__ import annotations

import io
import json
import re
import statistics
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from wildfeedback.io.outputs import write_text_atomically
from wildfeedback.report.data import ExamplePair, ReportData

LABEL_COLORS = {"SAT": "#2a9d8f", "DSAT": "#e76f51"}
LENGTH_COLORS = {"chosen": "#2a9d8f", "rejected": "#e76f51"}
MAX_BARS = 20  # categories beyond these are summed into one "other" bar
MAX_LABEL_CHARS = 48  # longer category names are cut in the plot (the table beside it has them whole)
MAX_POSITION = 10  # positions beyond this share one "10+" bar
# Plots are drawn on a bare `Figure` (no pyplot), so no GUI backend is ever chosen and the
# caller's matplotlib state is left alone; text stays text (`svg.fonttype: none`).
SVG_RC = {"svg.fonttype": "none", "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"], "font.size": 9}


def render_report(data: ReportData) -> str:
    """The report as an HTML string."""
    return _environment().get_template("report.html.j2").render(**_context(data))


def write_page(html: str, path: str | Path) -> Path:
    """Write a page under a temporary name and rename it, so a stopped run leaves no half-written page."""
    return write_text_atomically(Path(path), html)


def write_report(data: ReportData, path: str | Path) -> Path:
    return write_page(render_report(data), path)


def split_evidence(feedback: str, evidence: str | None) -> tuple[str, str, str] | None:
    """(before, evidence, after) around the evidence's first occurrence in the feedback, or None.

    The template escapes each part and puts only the middle one in `<mark>`: raw text is never
    marked up, so a quote cannot open or close tags.
    """
    if not evidence:
        return None
    start = feedback.find(evidence)
    if start < 0:
        return None
    end = start + len(evidence)
    return feedback[:start], feedback[start:end], feedback[end:]


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """Autoescaping on for every template, whatever its name; a missing value is an error, not a blank."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("wildfeedback.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["n"] = _number
    return environment


def _number(value: float) -> str:
    """1,234 for whole numbers, 1,234.5 otherwise."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _context(data: ReportData) -> dict[str, Any]:
    first = next(iter(data.funnel.values()), 0)
    funnel = [_stage(stage, count, first) for stage, count in data.funnel.items()]
    drops = [_drop(key, count) for key, count in sorted(data.drops.items(), key=lambda kv: (-kv[1], kv[0]))]
    feedback_labels = [label for label in ("SAT", "DSAT") if sum(data.categories.get(label, Counter()).values())]
    lengths = {"chosen": data.chosen_chars, "rejected": data.rejected_chars}
    pairs = sum(data.pair_kinds.values())
    return {
        "title": data.title,
        "seconds": data.seconds,
        "settings": [(str(key), _setting(value)) for key, value in data.settings.items()],
        "funnel": funnel,
        "drops": drops,
        "labels": [(label, count) for label, count in data.labels.most_common()],
        "estimated_rates": [(label, rate) for label in ("SAT", "DSAT", "NEUTRAL")
                            if (rate := data.estimated_rates().get(label)) is not None],
        "estimated_turns": data.probability_turns,
        "categories": [
            {"label": label, "rows": data.categories[label].most_common(), "svg": _category_chart(label, data)}
            for label in feedback_labels
        ],
        "positions": _positions_table(data.positions),
        "positions_svg": _positions_chart(data.positions),
        "lengths": [{"name": name, **_summary(values)} for name, values in lengths.items() if values],
        "lengths_svg": _lengths_chart(lengths),
        "pair_kinds": [
            {"kind": kind, "count": count, "share": 100.0 * count / pairs}
            for kind, count in data.pair_kinds.most_common()
        ],
        "examples": [_example(example) for example in data.examples],
    }


def _stage(stage: str, count: int, first: int) -> dict[str, Any]:
    """A funnel row; a later stage can count more than the first (replies, not conversations), so the bar is capped."""
    share = 100.0 * count / first if first else 0.0
    return {"stage": stage, "count": count, "share": share, "bar": min(max(share, 0.0), 100.0)}


def _drop(key: str, count: int) -> dict[str, Any]:
    """A drop's "stage: reason" key in two columns (the whole key as the reason when it has no stage)."""
    stage, _, reason = key.partition(": ")
    if not reason:
        stage, reason = "", key
    return {"stage": stage, "reason": reason, "count": count}


def _setting(value: Any) -> str:
    """Settings are shown as given: scalars as text, anything nested as JSON."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _summary(values: list[int]) -> dict[str, float]:
    quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {
        "count": len(values),
        "median": statistics.median(values),
        "p25": quartiles[0],
        "p75": quartiles[2],
        "mean": statistics.fmean(values),
        "max": max(values),
    }


def _example(example: ExamplePair) -> dict[str, Any]:
    parts = split_evidence(example.feedback, example.evidence) if example.feedback is not None else None
    return {"pair": example, "feedback_parts": parts, "evidence_elsewhere": bool(example.evidence) and parts is None}


def _position_buckets(positions: dict[str, Counter[int]]) -> list[str]:
    """Position labels 1..MAX_POSITION, the last one "10+" when some feedback comes later."""
    highest = max((p for counter in positions.values() for p, n in counter.items() if n), default=0)
    top = min(highest, MAX_POSITION)
    return [str(p) if p < MAX_POSITION or highest == MAX_POSITION else f"{p}+" for p in range(1, top + 1)]


def _bucketed(counter: Counter[int], buckets: int) -> list[int]:
    counts = [0] * buckets
    for position, n in counter.items():
        if position >= 1:
            counts[min(position, buckets) - 1] += n
    return counts


def _positions_table(positions: dict[str, Counter[int]]) -> dict[str, Any]:
    buckets = _position_buckets(positions)
    rows = [(label, _bucketed(positions.get(label, Counter()), len(buckets))) for label in ("SAT", "DSAT")]
    return {"buckets": buckets, "rows": [(label, counts) for label, counts in rows if sum(counts)]}


# Plots. User text (category names) reaches them as tick labels: matplotlib's SVG writer
# escapes it (tests check), and `$` is escaped so a name is never parsed as mathtext.


def _plain(text: str) -> str:
    text = text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"
    return text.replace("$", r"\$")


def _svg(figure: Figure, name: str) -> Markup:
    """The figure as an inline `<svg>` element, trusted because only matplotlib wrote it.

    The XML prolog, DOCTYPE and RDF metadata are dropped (they mean nothing inside HTML), the
    hash salt is the plot's name so ids differ between plots and a report renders identically
    twice, and there is no date in it.
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({**SVG_RC, "svg.hashsalt": name}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.DOTALL)
    return Markup(svg)  # matplotlib's output: the text inside is escaped by its writer


def _figure(width: float, height: float) -> Figure:
    """A bare figure (call inside `rc_context(SVG_RC)`: artists take their fonts when created)."""
    return Figure(figsize=(width, height), layout="constrained")


def _category_chart(label: str, data: ReportData) -> Markup | None:
    counter = data.categories.get(label, Counter())
    rows = counter.most_common(MAX_BARS)
    rest = counter.total() - sum(n for _, n in rows)
    if rest:
        rows.append((f"other ({len(counter) - len(rows)} categories)", rest))
    if not rows:
        return None
    with matplotlib.rc_context(SVG_RC):
        figure = _figure(7, 0.6 + 0.28 * len(rows))
        axes = figure.add_subplot()
        names = [_plain(name) for name, _ in rows][::-1]
        axes.barh(range(len(rows)), [n for _, n in rows][::-1], color=LABEL_COLORS[label])
        axes.set_yticks(range(len(rows)), names)
        axes.set_xlabel(f"{label} signals")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.spines[["top", "right"]].set_visible(False)
        return _svg(figure, f"categories-{label}")


def _positions_chart(positions: dict[str, Counter[int]]) -> Markup | None:
    table = _positions_table(positions)
    if not table["rows"]:
        return None
    with matplotlib.rc_context(SVG_RC):
        figure = _figure(7, 2.6)
        axes = figure.add_subplot()
        width = 0.8 / len(table["rows"])
        for i, (label, counts) in enumerate(table["rows"]):
            xs = [x + (i - (len(table["rows"]) - 1) / 2) * width for x in range(len(counts))]
            axes.bar(xs, counts, width=width, color=LABEL_COLORS[label], label=label)
        axes.set_xticks(range(len(table["buckets"])), table["buckets"])
        axes.set_xlabel("position of the user turn among the conversation's user turns")
        axes.set_ylabel("signals")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(frameon=False)
        axes.spines[["top", "right"]].set_visible(False)
        return _svg(figure, "positions")


def _lengths_chart(lengths: dict[str, list[int]]) -> Markup | None:
    """Chosen and rejected lengths on shared bins; log-spaced when they span orders of magnitude (replies do)."""
    present = {name: values for name, values in lengths.items() if values}
    if not present:
        return None
    everything = [v for values in present.values() for v in values]
    low, high = max(min(everything), 1), max(everything) + 1
    logarithmic = high / low > 50
    bins = np.geomspace(low, high, 31) if logarithmic else np.linspace(min(everything), high, 31)
    with matplotlib.rc_context(SVG_RC):
        figure = _figure(7, 2.6)
        axes = figure.add_subplot()
        for name, values in present.items():
            axes.hist(
                [max(v, 1) for v in values] if logarithmic else values,  # an empty reply in the first bin
                bins=bins,
                histtype="step",
                linewidth=1.6,
                color=LENGTH_COLORS[name],
                label=f"{name} (median {statistics.median(values):,.0f})",
            )
        if logarithmic:
            axes.set_xscale("log")
        axes.set_xlabel("reply length (characters" + (", log scale)" if logarithmic else ")"))
        axes.set_ylabel("replies")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(frameon=False)
        axes.spines[["top", "right"]].set_visible(False)
        return _svg(figure, "lengths")
