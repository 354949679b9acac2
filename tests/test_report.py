"""The HTML run report: every section renders, user text stays text, nothing is fetched, nothing runs.

The unit tests read the HTML; the browser test opens the written file in headless
Chromium (Debian's `chromium`, driven by Playwright) and checks what a person
would see, that the injected payloads did not run and that no request left the file.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from wildfeedback.report.data import ExamplePair, ReportData
from wildfeedback.report.html import render_report, split_evidence, write_report
from wildfeedback.schema import Signal

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
SECTIONS = [
    "Settings",
    "Funnel",
    "Dropped, by reason",
    "Feedback categories",
    "Where feedback occurs",
    "Lengths of chosen and rejected replies",
    "Pair kinds",
    "Example pairs",
]

SCRIPT = "<script>window.__pwned=1;alert(1)</script>"
IMG = '<img src=x onerror="window.__pwned=1;alert(1)">'
SVG_ONLOAD = "<svg onload=alert(1)>"
# Every place user or model text reaches the report gets a payload.
HOSTILE = {
    "title": f"run {SCRIPT}",
    "setting key": f"input {IMG}",
    "setting value": f"logs/{SCRIPT}.jsonl",
    "stage": f"read {IMG}",
    "drop reason": f"bad {SVG_ONLOAD}",  # after "ingest: ", in a column of its own
    "category": SCRIPT,
    "kind": f"generated{IMG}",
    "conversation": f"c1{SCRIPT}",
    "prompt": f"Write a haiku about cats {SCRIPT}",
    "rejected": f"Cats are dogs. {IMG}",
    "chosen": "Soft paws on the sill / the morning light is theirs now / a slow blink, then sleep",
    "feedback": f"No, that is wrong {SCRIPT} — cats are not dogs. That is wrong twice.",
    "evidence": "that is wrong",
    "preferences": f"accurate, in 5-7-5 {IMG}",
    "checklist": f"is a haiku {SVG_ONLOAD}",
}


def full_data() -> ReportData:
    data = ReportData(title=HOSTILE["title"], seconds=12.5)
    data.settings = {
        HOSTILE["setting key"]: HOSTILE["setting value"],
        "detector": "cascade",
        "caps": {"max_pairs": 40, "models": ["student", "openai:Qwen"]},
    }
    data.funnel = {
        "conversations read": 1000,
        "with a user turn after a reply": 800,
        "with feedback (SAT or DSAT)": 300,
        "DSAT replies": 120,
        "preference pairs": 40,
        HOSTILE["stage"]: 7,
    }
    data.drops = {
        "signals: no user turn after a reply": 200,
        "pairs: no preferences stated": 80,
        f"ingest: {HOSTILE['drop reason']}": 3,
    }
    data.labels = Counter({"SAT": 180, "DSAT": 120, "NEUTRAL": 500})
    data.categories = {
        "SAT": Counter({"Gratitude": 120, "Learning": 40, "cost $5 vs $10": 15, HOSTILE["category"]: 5}),
        "DSAT": Counter({"Revision": 60, "Factual Error": 40, "Negative Feedback": 20}),
    }
    data.positions = {"SAT": Counter({1: 100, 2: 50, 3: 20, 14: 10}), "DSAT": Counter({1: 70, 2: 30, 5: 20})}
    data.chosen_chars = [120, 300, 450, 800, 1500, 20000]
    data.rejected_chars = [90, 350, 700, 2000]
    data.pair_kinds = Counter({"generated": 30, "corrected": 7, HOSTILE["kind"]: 3})
    data.examples = [
        ExamplePair(
            kind=HOSTILE["kind"],
            conversation_id=HOSTILE["conversation"],
            prompt_last_user=HOSTILE["prompt"],
            rejected=HOSTILE["rejected"],
            chosen=HOSTILE["chosen"],
            feedback=HOSTILE["feedback"],
            evidence=HOSTILE["evidence"],
            categories=["Revision", HOSTILE["category"]],
            preferences=HOSTILE["preferences"],
            checklist=["5-7-5 syllables", HOSTILE["checklist"]],
        ),
        ExamplePair(  # the evidence is markup itself, and a second pair whose quote is not in the turn
            "generated", "c2", "hi", "bad", "good", "this <b>is wrong</b>", "<b>is wrong</b>", [], None, []
        ),
        ExamplePair("regenerated", "c3", "hi", "bad", "good", "meh", "not in the turn", [], None, []),
        ExamplePair("ranked", "c4", "hi", "worse", "better", None, None, [], None, []),
    ]
    return data


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)


class Tags(HTMLParser):
    """The elements a browser would build from the page, with their attributes (escaped text is not a tag)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


# --- the HTML -------------------------------------------------------------------------------------


def test_full_report_has_every_section_and_the_numbers() -> None:
    page = render_report(full_data())
    for heading in SECTIONS:
        assert f">{html.escape(heading)}</h" in page, heading
    for number in ("1,000", "800", "300", "120", "40"):
        assert f'<td class="n">{number}</td>' in page
    assert "100.0%" in page and "4.0%" in page  # share of the first stage
    assert "no user turn after a reply" in page and "signals" in page
    assert len(svgs(page)) == 4  # SAT and DSAT categories, positions, lengths
    assert "10+" in page  # positions past 10 share a bar
    assert "Gratitude" in page and "Factual Error" in page
    # medians are given as numbers, not only drawn
    assert '<td class="n">625</td>' in page and '<td class="n">525</td>' in page
    assert "Soft paws on the sill" in page


def test_empty_report_renders_with_sentences() -> None:
    page = render_report(ReportData())
    for heading in SECTIONS:
        assert f">{html.escape(heading)}</h" in page, heading
    for sentence in (
        "Nothing was counted: the run read no conversations.",
        "Nothing was dropped.",
        "No SAT or DSAT feedback was found, so there are no categories to show.",
        "No SAT or DSAT feedback was found, so there are no positions to show.",
        "No preference pairs were made, so there are no reply lengths to show.",
        "No preference pairs were made.",
        "No example pairs: no preference pairs were made.",
    ):
        assert sentence in page
    assert not svgs(page)


def test_only_neutral_signals_and_no_pairs() -> None:
    data = ReportData(funnel={"conversations read": 5, "preference pairs": 0}, labels=Counter({"NEUTRAL": 9}))
    page = render_report(data)
    assert "NEUTRAL 9" in page and "No SAT or DSAT feedback was found" in page
    assert "No example pairs" in page and not svgs(page)


def test_estimated_rates_are_the_mean_probability_of_the_turns_that_carry_one() -> None:
    def signal(label: str, probabilities: dict[str, float] | None) -> Signal:
        return Signal(conversation_id="c", turn_index=2, label=label, detector="student",  # type: ignore[arg-type]
                      metadata={"probabilities": probabilities} if probabilities else {})

    data = ReportData()
    data.add_signals([signal("DSAT", {"SAT": 0.1, "DSAT": 0.7, "NEUTRAL": 0.2}),
                      signal("NEUTRAL", {"SAT": 0.1, "DSAT": 0.3, "NEUTRAL": 0.6}),
                      signal("SAT", None)], positions={})  # an LLM's label carries no probabilities
    assert data.estimated_rates() == {"DSAT": 50.0, "NEUTRAL": 40.0, "SAT": 10.0}
    assert data.as_dict()["estimated_rates"]["DSAT"] == 50.0
    page = render_report(data)
    assert "mean calibrated probability over 2 user turns" in page and "DSAT 50.0%" in page
    assert "Estimated rates" not in render_report(ReportData())


def test_every_user_string_is_escaped() -> None:
    page = render_report(full_data())
    unmarked = page.replace("<mark>", "").replace("</mark>", "")  # the feedback turn is split around its evidence
    for where, value in HOSTILE.items():
        assert str(escape(value)) in unmarked, where
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "<svg onload" not in page.lower()
    tags = Tags(page).tags
    assert not {tag for tag, _ in tags} & {"script", "img", "iframe", "object", "embed", "foreignobject", "a"}
    assert not [(tag, name) for tag, attrs in tags for name in attrs if name.startswith("on")]  # no event handlers


def test_csp_forbids_scripts_and_fetches() -> None:
    page = render_report(full_data())
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert meta is not None and html.unescape(meta.group(1)) == CSP
    assert page.index("Content-Security-Policy") < page.index("<body")


def test_nothing_external_is_referenced() -> None:
    page = render_report(full_data())
    tags = Tags(page).tags
    references = [
        value
        for _, attrs in tags
        for name, value in attrs.items()
        if name in {"src", "href", "xlink:href", "action", "srcset", "poster", "data"}
    ]
    assert references and all(ref.startswith("#") for ref in references), references  # the SVGs' own <use>
    styles = [attrs.get("style", "") for _, attrs in tags] + re.findall(r"<style\b[^>]*>(.*?)</style>", page, re.DOTALL)
    urls = [url for style in styles for url in re.findall(r"url\(\s*['\"]?([^)'\"]*)", style)]
    urls += [value for _, attrs in tags for value in attrs.values() if value.startswith("url(")]
    assert all(url.lstrip("url(").startswith("#") for url in urls), urls
    assert "@import" not in page
    assert not {tag for tag, _ in tags} & {"link", "iframe", "object", "embed", "base", "img", "image"}
    # The only http(s) strings left are the SVG namespace declarations.
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }


def test_evidence_is_marked_once_and_escaped() -> None:
    page = render_report(full_data())
    marked = str(escape(HOSTILE["feedback"])).replace("that is wrong", "<mark>that is wrong</mark>", 1)
    assert marked in page  # the first occurrence only, the rest of the turn escaped around it
    assert "this <mark>&lt;b&gt;is wrong&lt;/b&gt;</mark>" in page  # a quote that is markup stays text
    assert "(not found word for word in the feedback turn)" in page
    assert "<mark>not in the turn</mark>" in page
    assert split_evidence("a b a", "a") == ("", "a", " b a")
    assert (
        split_evidence("abc", "x") is None and split_evidence("abc", None) is None and split_evidence("abc", "") is None
    )


def test_plot_text_is_escaped_svg() -> None:
    """Category names reach the plots as tick labels: matplotlib must write them as escaped text nodes."""
    page = render_report(full_data())
    texts: list[str] = []
    for svg in svgs(page):
        root = ElementTree.fromstring(svg)  # well-formed: nothing injected broke out of a text node
        tags = {element.tag.rpartition("}")[2] for element in root.iter()}
        assert not tags & {"script", "foreignObject", "image", "a", "iframe"}, tags
        assert not any(name.startswith("on") for element in root.iter() for name in element.attrib)
        texts += ["".join(element.itertext()) for element in root.iter() if element.tag.endswith("}text")]
    assert HOSTILE["category"] in texts  # shown as the literal string
    assert "cost $5 vs $10" in texts  # not parsed as mathtext
    assert html.escape(HOSTILE["category"], quote=False) in "".join(svgs(page))


def test_write_report_is_atomic_and_deterministic(tmp_path: Path) -> None:
    path = write_report(full_data(), tmp_path / "sub" / "report.html")
    assert path == tmp_path / "sub" / "report.html" and path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]
    assert render_report(full_data()) == render_report(full_data())  # no dates, no random ids


# --- a real browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if not CHROMIUM.exists():
        pytest.skip(
            f"headless Chromium not installed at {CHROMIUM} (Debian package `chromium`; `make test` installs it)"
        )
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_report(browser, path: Path):  # type: ignore[no-untyped-def]
    """Open the file, recording every request and dialog; returns (page, requests, dialogs)."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    def on_dialog(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_timeout(300)  # give any (blocked) handler a moment to fire
    return page, requests, dialogs


def test_report_in_chromium(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_report(full_data(), tmp_path / "report.html")
    page, requests, dialogs = open_report(browser, path)
    try:
        body = page.inner_text("body")
        for heading in SECTIONS:
            assert page.get_by_role("heading", name=heading, exact=True).is_visible(), heading
        assert "conversations read" in body and "1,000" in body and "preference pairs" in body
        assert HOSTILE["chosen"] in body and HOSTILE["prompt"] in body  # the injected script shows as text
        assert SCRIPT in body and IMG in body
        assert page.title() == HOSTILE["title"]
        assert page.locator("mark").first.inner_text() == "that is wrong"
        assert page.locator("script").count() == 0 and page.locator("img").count() == 0
        assert page.locator("svg").count() == 4 and page.locator("svg").first.is_visible()
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert dialogs == []
        assert requests == [path.as_uri()]

        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        png = shot.read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    finally:
        page.close()


def test_empty_report_in_chromium(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_report(ReportData(), tmp_path / "empty.html")
    page, requests, dialogs = open_report(browser, path)
    try:
        body = page.inner_text("body")
        assert "No example pairs: no preference pairs were made." in body
        assert "Nothing was counted: the run read no conversations." in body
        assert dialogs == [] and requests == [path.as_uri()]
    finally:
        page.close()
