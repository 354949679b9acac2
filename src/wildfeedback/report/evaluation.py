"""The checklist evaluation as a page of the report: win / tie / loss bars with their
95% CIs, the single-answer scores, and every item with both replies and the verdict.

Same rules as the run report (`html.py`): one self-contained file, autoescaped,
plots as inline SVG, a CSP that forbids scripts and fetches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
from markupsafe import Markup

from wildfeedback.report.html import SVG_RC, _environment, _figure, _svg, write_page

OUTCOME_COLORS = {"win": "#2a9d8f", "tie": "#adb5bd", "loss": "#e76f51"}
MAX_ITEMS_SHOWN = 50


def _rates_chart(pairwise: dict[str, Any]) -> Markup | None:
    if not pairwise.get("n"):
        return None
    with matplotlib.rc_context(SVG_RC):
        figure = _figure(6.0, 2.2)
        axes = figure.add_subplot()
        names = ["win", "tie", "loss"]
        values = [100 * pairwise[n] for n in names]
        low = [100 * (pairwise[n] - pairwise[f"{n}_ci"][0]) for n in names]
        high = [100 * (pairwise[f"{n}_ci"][1] - pairwise[n]) for n in names]
        axes.barh(names[::-1], values[::-1], xerr=[low[::-1], high[::-1]], capsize=4,
                  color=[OUTCOME_COLORS[n] for n in names[::-1]])
        axes.set_xlim(0, 100)
        axes.set_xlabel("% of judged items (bars: 95% bootstrap CI)")
        return _svg(figure, "rates")


def render_evaluation(result: dict[str, Any], title: str = "Checklist evaluation") -> str:
    rows = result.get("rows", [])
    return _environment().get_template("evaluation.html.j2").render(
        title=title,
        result=result,
        pairwise=result["pairwise"],
        chart=_rates_chart(result["pairwise"]),
        single=result.get("single"),
        rows=rows[:MAX_ITEMS_SHOWN],
        hidden=max(0, len(rows) - MAX_ITEMS_SHOWN),
    )


def write_evaluation(result: dict[str, Any], path: str | Path) -> Path:
    return write_page(render_evaluation(result), path)
