"""`wildfeedback signals ...` as a user runs it: the installed script, real files, a real
HTTP server for the LLM, and a detection run killed with SIGKILL and resumed from the cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from llm_server.harness import ScriptedServer

from tests.conftest import write_jsonl
from tests.test_cli import SCRIPT, run
from wildfeedback.io.records import read_records
from wildfeedback.schema import Signal, SignalIssue
from wildfeedback.signals.rubric import load_rubric

pytest.importorskip("sentence_transformers")


def chats(tmp_path: Path, n: int, thumbs: bool = False) -> Path:
    """OpenAI-format conversations; conversation i carries the marker key c{i}."""
    lines = []
    for i in range(n):
        reply = {"role": "assistant", "content": f"answer {i}"}
        if thumbs:
            reply["thumbs"] = "up" if i % 2 == 0 else "down"
        lines.append(orjson.dumps({"id": f"c{i}", "messages": [
            {"role": "user", "content": f"[[key=c{i}]] question {i}"},
            reply,
            {"role": "user", "content": "thanks, that helps" if i % 2 == 0 else "no, that is wrong"},
        ]}))
    return write_jsonl(tmp_path / "chats.jsonl", lines)


def llm_args(server: ScriptedServer, cache: Path) -> list[str]:
    return ["--llm", "openai:scripted", "--base-url", server.base_url, "--cache", str(cache)]


def test_student_detect_writes_signals_and_a_report(tmp_path: Path) -> None:
    source = chats(tmp_path, 4)
    result = run("signals", "detect", str(source), "-o", str(tmp_path / "s.parquet"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["detector"], report["conversations"], report["signals"], report["issues"]) == ("student", 4, 4, 0)
    signals = list(read_records(tmp_path / "s.parquet", Signal))
    assert [(s.conversation_id, s.turn_index) for s in signals] == [(f"c{i}", 2) for i in range(4)]
    assert all(s.evidence and s.evidence in ("thanks, that helps", "no, that is wrong") for s in signals)


def test_llm_detect_over_http_then_a_rerun_calls_nothing(tmp_path: Path, server: ScriptedServer) -> None:
    source = chats(tmp_path, 3)
    server.script("c0", {"content": json.dumps({"turns": [
        {"turn_index": 2, "label": "SAT", "categories": ["Gratitude"], "evidence": "thanks"}]})})
    server.script("c1", *[{"content": "not json"}, {"content": "not json either"}] * 2)
    out = tmp_path / "llm.jsonl"
    args = ["signals", "detect", str(source), "-o", str(out), "--detector", "llm", *llm_args(server, tmp_path / "c.sqlite"), "--json"]
    first = run(*args)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["signals"] >= 1 and report["issues"] >= 1
    assert report["counts"]["llm: issue invalid_json"] == 1
    issues = list(read_records(tmp_path / "llm.issues.jsonl", SignalIssue))
    assert any(i.conversation_id == "c1" and i.kind == "invalid_json" for i in issues)
    calls = server.stats()["total"]

    second = run(*args)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    # Every usable answer is replayed (c0, c2); c1's replies failed validation and
    # were not stored, so the rerun asks again (the server may have been fixed).
    assert calls == 4 and server.stats()["total"] == calls + 2  # c0, c2, and c1 with its repair; c1 again
    assert again["cache"]["hits"] == 2 and again["tokens_spent"]["calls"] == 2
    assert (again["signals"], again["issues"]) == (report["signals"], report["issues"])


def test_killed_detection_resumes_without_repeating_finished_calls(tmp_path: Path, server: ScriptedServer) -> None:
    n, concurrency = 40, 4
    source = chats(tmp_path, n)
    server.default({"sleep": 0.15})
    cache = tmp_path / "resume.sqlite"
    args = [SCRIPT, "signals", "detect", str(source), "-o", str(tmp_path / "r.parquet"), "--detector", "llm",
            *llm_args(server, cache), "--concurrency", str(concurrency), "--batch-size", "8", "--json"]
    job = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    deadline = time.monotonic() + 120
    while server.stats()["completed"] < 12:
        assert job.poll() is None, f"the run ended before it could be killed: {job.communicate()}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=10)
    assert not (tmp_path / "r.parquet").exists(), "a killed run must not leave a file that looks complete"
    killed_at = server.stats()
    assert killed_at["total"] < n
    time.sleep(0.5)

    rerun = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    after = server.stats()
    assert sorted(after["calls"]) == sorted(f"c{i}" for i in range(n))
    assert n <= after["total"] <= n + concurrency  # only calls in flight at the kill are repeated
    assert report["cache"]["hits"] >= killed_at["completed"] - concurrency
    assert report["conversations"] == n


@pytest.mark.parametrize(("kind", "files", "extra"), [
    ("lexical", ("lexical.json", "lexical.npz"), ()),
    ("minilm", ("student.json", "student.npz"), ("--holdout", "0.25")),
    ("two-stage", ("two_stage.json", "cross.safetensors", "lexical.npz"), ()),
])
def test_train_from_thumbs_then_detect_with_the_trained_model(tmp_path: Path, kind: str, files: tuple[str, str],
                                                              extra: tuple[str, ...]) -> None:
    source = chats(tmp_path, 24, thumbs=True)
    model = tmp_path / "student"
    result = run("signals", "train", str(source), "-o", str(model), "--model", kind, *extra, "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["trained_on"] == {"openai": {"SAT": 12, "DSAT": 12, "NEUTRAL": 0, "total": 24}}
    assert {"lexical": "cross_validated", "minilm": "held_out", "two-stage": "cross_fitted"}[kind] in metrics
    assert all((model / name).exists() for name in files)
    result = run("signals", "detect", str(source), "-o", str(tmp_path / "t.jsonl"), "--student-model", str(model), "--json")
    assert result.returncode == 0, result.stderr
    signals = list(read_records(tmp_path / "t.jsonl", Signal))
    right = sum(s.label == ("SAT" if int(s.conversation_id[1:]) % 2 == 0 else "DSAT") for s in signals)
    assert right == 24  # the two kinds of answer are far apart: the trained model must separate them


def test_learn_rubric_over_http_writes_a_usable_rubric(tmp_path: Path, server: ScriptedServer) -> None:
    source = chats(tmp_path, 6, thumbs=True)
    out = tmp_path / "learned.yaml"
    result = run("signals", "learn-rubric", str(source), "-o", str(out), *llm_args(server, tmp_path / "c.sqlite"),
                 "--name", "mine", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["conversations"] == 6 and summary["labels"] == {"SAT": 3, "DSAT": 3, "NEUTRAL": 0}
    rubric = load_rubric(out)
    assert rubric.name == "mine" and rubric.sat and rubric.dsat
    result = run("signals", "detect", str(source), "-o", str(tmp_path / "r.jsonl"), "--detector", "rubric",
                 "--rubric", str(out), *llm_args(server, tmp_path / "c.sqlite"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["signals"] == 6


def test_bad_options_are_precise(tmp_path: Path) -> None:
    source = chats(tmp_path, 1)
    result = run("signals", "detect", str(source), "-o", str(tmp_path / "x.parquet"), "--detector", "magic")
    assert result.returncode == 2 and "--detector must be one of student, llm, cascade, rubric" in result.stderr
    result = run("signals", "detect", str(source), "-o", str(tmp_path / "x.parquet"), "--detector", "rubric",
                 "--llm", "openai:m", "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 2 and "pass --rubric FILE" in result.stderr
    result = run("signals", "detect", str(source), "-o", str(tmp_path / "x.parquet"), "--detector", "llm", "--llm", "gpt")
    assert result.returncode == 2 and "expected 'embedded', 'openai:MODEL' or 'vllm:MODEL'" in result.stderr
