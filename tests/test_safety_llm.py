"""Issue 10, "never lose a user's data", for LLM calls and the response cache.

Every test talks to a real HTTP server process (tests/llm_server) or a port where
none listens, and the command-line tests run the installed `wildfeedback` script:

* bounded time: one call may not outlast its deadline, whether the server trickles
  a byte at a time (the client's read timeout restarts on every byte) or never
  answers (the client retries);
* honest exit codes: a run whose LLM calls (nearly) all failed exits 1 with the
  reason, after writing its outputs;
* the cache: only replies that validated are replayed; answers are keyed by the
  server too; a file that is not a cache is refused in one line.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

import orjson
import pytest
from llm_server.harness import ScriptedServer
from pydantic import BaseModel

from tests.conftest import write_jsonl
from tests.test_cli import run
from wildfeedback.commands import console
from wildfeedback.io.records import read_records
from wildfeedback.llm import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_FAILURE_RATE,
    CachedBackend,
    CacheError,
    Completion,
    Failure,
    LLMUnavailableError,
    OpenAICompatBackend,
    Request,
    ResponseCache,
    call_structured_sync,
    check_failures,
    make_backend,
)
from wildfeedback.schema import Signal, SignalIssue


def ask(key: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"[[key={key}]] hello"}]


def chats(tmp_path: Path, n: int) -> Path:
    """n conversations with one user turn to label each; conversation i carries the key c{i}."""
    lines = [
        orjson.dumps({"id": f"c{i}", "messages": [
            {"role": "user", "content": f"[[key=c{i}]] question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
            {"role": "user", "content": "no, that is wrong"},
        ]})
        for i in range(n)
    ]
    return write_jsonl(tmp_path / "chats.jsonl", lines)


def dead_url() -> str:
    """The URL of a port on which nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# -- case 10: bounded time ----------------------------------------------------


def test_a_trickling_server_is_cut_off_at_the_call_deadline(server: ScriptedServer) -> None:
    # One byte every 0.3 s never trips a 1 s read timeout: before the deadline this
    # call took about 0.3 s x the ~300 bytes of the answer (and hours at 5 s a byte).
    server.script("trickle", {"trickle": 0.3})
    backend = server.backend(timeout=1, max_retries=0, deadline=1.5)
    started = time.monotonic()
    [outcome] = backend.complete_many_sync([Request(ask("trickle"))])
    elapsed = time.monotonic() - started
    assert isinstance(outcome, Failure) and outcome.kind == "timeout", outcome
    assert "1.5 s deadline" in outcome.message
    assert 1.4 < elapsed < 4, elapsed
    assert (backend.usage.calls, backend.usage.failed, dict(backend.usage.failed_by_kind)) == (0, 1, {"timeout": 1})


def test_a_silent_server_costs_one_deadline_not_every_retry(server: ScriptedServer) -> None:
    # Without the deadline: 5 attempts of 1 s each plus backoff, per call.
    server.default({"hang": 30})
    backend = server.backend(timeout=1, max_retries=4, deadline=1.5)
    started = time.monotonic()
    outcomes = backend.complete_many_sync([Request(ask(f"silent{i}")) for i in range(3)], concurrency=3)
    elapsed = time.monotonic() - started
    assert [o.kind for o in outcomes] == ["timeout"] * 3  # type: ignore[union-attr]
    assert elapsed < 3.5, elapsed


def test_the_deadline_reaches_the_backend_and_must_be_positive() -> None:
    backend = make_backend("openai:m", "http://127.0.0.1:9/v1", api_key="k", deadline=7)
    assert isinstance(backend, OpenAICompatBackend) and backend.deadline == 7
    assert make_backend("openai:m", "http://127.0.0.1:9/v1", api_key="k").deadline == DEFAULT_DEADLINE  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="more than 0 seconds"):
        make_backend("openai:m", "http://127.0.0.1:9/v1", api_key="k", deadline=0)
    # The command line spells the defaults again (to start without the LLM client): they must agree.
    assert (console.DEFAULT_LLM_TIMEOUT, console.DEFAULT_MAX_FAILURE_RATE) == (DEFAULT_DEADLINE, DEFAULT_MAX_FAILURE_RATE)


def test_detect_with_llm_timeout_turns_a_silent_server_into_timeout_issues(tmp_path: Path, server: ScriptedServer) -> None:
    server.default({"hang": 60})
    out = tmp_path / "s.jsonl"
    started = time.monotonic()
    result = run("signals", "detect", str(chats(tmp_path, 3)), "-o", str(out), "--detector", "llm",
                 "--llm", "openai:scripted", "--base-url", server.base_url, "--no-cache", "--llm-timeout", "1")
    elapsed = time.monotonic() - started
    issues = list(read_records(tmp_path / "s.issues.jsonl", SignalIssue))
    assert [i.kind for i in issues] == ["timeout"] * 3
    assert result.returncode == 1, result.stderr  # every call failed: case 11
    [line] = error_lines(result.stderr)
    assert "3 of 3 LLM calls to scripted failed (timeout: no complete answer within the 1 s deadline" in line
    assert elapsed < 30, elapsed  # was 120 s per call by default, and unbounded before


# -- case 11: honest exit codes -----------------------------------------------


def test_detect_against_a_dead_server_exits_1_after_writing_its_outputs(tmp_path: Path) -> None:
    url = dead_url()
    out = tmp_path / "s.jsonl"
    result = run("signals", "detect", str(chats(tmp_path, 6)), "-o", str(out), "--detector", "llm",
                 "--llm", "openai:scripted", "--base-url", url, "--cache", str(tmp_path / "c.sqlite"), "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert f"6 of 6 LLM calls to scripted failed (connection: cannot reach {url}" in line
    assert "check --base-url / the server" in line
    # What was done is written and complete: the report, the (empty) signals, one issue per call.
    report = json.loads(result.stdout)
    assert (report["signals"], report["issues"], report["tokens_spent"]["failed"]) == (0, 6, 6)
    assert out.exists() and list(read_records(out, Signal)) == []
    issues = list(read_records(tmp_path / "s.issues.jsonl", SignalIssue))
    assert sorted(i.conversation_id for i in issues) == [f"c{i}" for i in range(6)]
    assert {i.kind for i in issues} == {"connection"}


def test_a_few_failures_exit_0_and_more_than_the_rate_exit_1(tmp_path: Path, server: ScriptedServer) -> None:
    source = chats(tmp_path, 10)

    def detect(name: str, *more: str):  # type: ignore[no-untyped-def]
        return run("signals", "detect", str(source), "-o", str(tmp_path / f"{name}.jsonl"), "--detector", "llm",
                   "--llm", "openai:scripted", "--base-url", server.base_url, "--no-cache", *more)

    for i in (0, 1):  # 2 of 10 calls refused, in each of the two runs: below the default rate of 0.5
        server.script(f"c{i}", {"status": 400}, {"status": 400})
    few = detect("few")
    assert few.returncode == 0, few.stderr
    refused = [i.conversation_id for i in read_records(tmp_path / "few.issues.jsonl", SignalIssue) if i.kind == "http"]
    assert refused == ["c0", "c1"]

    stricter = detect("strict", "--max-failure-rate", "0.1")  # 2 of 10 is more than 0.1
    assert stricter.returncode == 1
    [line] = error_lines(stricter.stderr)
    assert "2 of 10 LLM calls to scripted failed, more than the --max-failure-rate 0.1 (http 400: " in line
    refused = [i.conversation_id for i in read_records(tmp_path / "strict.issues.jsonl", SignalIssue) if i.kind == "http"]
    assert refused == ["c0", "c1"]


def test_learn_rubric_against_a_dead_server_names_the_server_not_the_rubric(tmp_path: Path) -> None:
    lines = [orjson.dumps({"id": f"t{i}", "messages": [
        {"role": "user", "content": f"question {i}"},
        {"role": "assistant", "content": f"answer {i}", "thumbs": "up" if i % 2 else "down"},
        {"role": "user", "content": "thanks" if i % 2 else "no, that is wrong"},
    ]}) for i in range(4)]
    source = write_jsonl(tmp_path / "thumbs.jsonl", lines)
    result = run("signals", "learn-rubric", str(source), "-o", str(tmp_path / "r.yaml"), "--llm", "openai:scripted",
                 "--base-url", dead_url(), "--no-cache", "--llm-timeout", "2")
    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "4 of 4 LLM calls to scripted failed" in line and "check --base-url / the server" in line


def test_run_with_every_call_refused_exits_1_after_writing_its_outputs(tmp_path: Path, server: ScriptedServer) -> None:
    server.default({"status": 400})
    out = tmp_path / "run"
    result = run("run", str(chats(tmp_path, 3)), "-o", str(out), "--llm", "openai:scripted", "--base-url",
                 server.base_url, "--detector", "llm", "--lang", "all", "--no-cache", "--json")
    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "3 of 3 LLM calls to scripted failed (http 400: Error code: 400 - scripted 400)" in line
    summary = json.loads(result.stdout)
    assert summary["llm_usage"]["analyst"]["failed"] == 3
    assert json.loads((out / "run.json").read_text())["llm_usage"] == summary["llm_usage"]
    assert (out / "report.html").exists() and (out / "signals.issues.jsonl").exists()


def test_cache_hits_count_as_answers_in_the_failure_share(tmp_path: Path, server: ScriptedServer) -> None:
    db = tmp_path / "c.sqlite"
    first = make_backend("openai:scripted", server.base_url, api_key="k", max_retries=0, cache=db)
    first.complete_many_sync([Request(ask(f"h{i}")) for i in range(4)])
    server.default({"status": 400})
    resumed = make_backend("openai:scripted", server.base_url, api_key="k", max_retries=0, cache=db)
    outcomes = resumed.complete_many_sync([Request(ask(f"h{i}")) for i in range(5)])
    assert [isinstance(o, Completion) for o in outcomes] == [True] * 4 + [False]
    check_failures(resumed)  # 1 of 5 answers missing: the run's outputs are mostly good, exit 0
    uncached = server.backend()
    uncached.complete_many_sync([Request(ask("h9"))])
    with pytest.raises(LLMUnavailableError, match="1 of 1 LLM calls to scripted failed") as raised:
        check_failures(uncached)
    assert raised.value.exit_code == 1


# -- case 12: the cache ---------------------------------------------------------


class Answer(BaseModel):
    answer: int


def test_a_reply_that_failed_validation_is_not_replayed_once_the_server_is_fixed(
    tmp_path: Path, server: ScriptedServer
) -> None:
    db = tmp_path / "c.sqlite"
    server.script("v", {"content": "forty-two"}, {"content": "still not JSON"})
    broken = call_structured_sync(CachedBackend(server.backend(), db, "t/1"), ask("v"), Answer)
    assert broken.error is not None and broken.error.kind == "invalid_json"
    assert len(ResponseCache(db)) == 0  # neither the reply nor its failed repair is kept
    server.reset()  # the server is fixed: it now answers from the schema
    fixed = call_structured_sync(CachedBackend(server.backend(), db, "t/1"), ask("v"), Answer)
    assert fixed.ok and not fixed.completions[0].cached
    assert server.stats()["calls"] == {"v": 1}
    replayed = call_structured_sync(CachedBackend(server.backend(), db, "t/1"), ask("v"), Answer)
    assert replayed.value == fixed.value and replayed.completions[0].cached  # the good reply is kept


def test_two_servers_serving_one_model_name_do_not_share_answers(tmp_path: Path, server: ScriptedServer) -> None:
    db = tmp_path / "c.sqlite"
    other = ScriptedServer()
    try:
        server.default({"content": "from the first server"})
        other.default({"content": "from the second server"})
        first = CachedBackend(server.backend("same-name"), db, "t/1").complete_sync(ask("m"))
        second = CachedBackend(other.backend("same-name"), db, "t/1").complete_sync(ask("m"))
        assert (first.text, second.text) == ("from the first server", "from the second server")
        assert not second.cached and other.stats()["total"] == 1
        again = CachedBackend(other.backend("same-name"), db, "t/1").complete_sync(ask("m"))
        assert again.cached and again.text == "from the second server"
    finally:
        other.stop()


def test_a_cache_that_is_not_sqlite_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("my notes, not a cache\n")
    result = run("signals", "detect", str(chats(tmp_path, 1)), "-o", str(tmp_path / "s.jsonl"), "--detector", "llm",
                 "--llm", "openai:m", "--base-url", dead_url(), "--cache", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = error_lines(result.stderr)
    assert f"{bad} is not a wildfeedback response cache (SQLite): move it away or pass another --cache" in line
    assert bad.read_text() == "my notes, not a cache\n"
    assert not (tmp_path / "s.jsonl").exists()  # refused before anything ran


def test_another_programs_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    theirs = tmp_path / "app.db"
    with sqlite3.connect(theirs) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(CacheError, match="is not a wildfeedback response cache"):
        ResponseCache(theirs)
    with sqlite3.connect(theirs) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["users"]


def test_a_cache_path_that_cannot_be_opened_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = run("signals", "detect", str(chats(tmp_path, 1)), "-o", str(tmp_path / "s.jsonl"), "--detector", "llm",
                 "--llm", "openai:m", "--base-url", dead_url(), "--cache", str(folder))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = error_lines(result.stderr)
    assert f"{folder}: cannot open the response cache" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_cache_in_a_read_only_folder_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(CacheError, match="cannot open the response cache"):
            ResponseCache(folder / "c.sqlite")
    finally:
        folder.chmod(0o755)
