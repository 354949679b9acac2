"""The command line as a user runs it: the installed `wildfeedback` script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import shared, write_jsonl

SCRIPT = str(Path(sys.executable).with_name("wildfeedback"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=300)


def sharegpt(tmp_path: Path, n: int = 3) -> Path:
    records = [
        {"id": f"c{i}", "conversations": [{"from": "human", "value": f"question {i}"}, {"from": "gpt", "value": "answer"}]}
        for i in range(n)
    ]
    return write_jsonl(tmp_path / "in.jsonl", [orjson.dumps(r) for r in records])


def test_ingest_json_report_and_stats(tmp_path: Path) -> None:
    source = sharegpt(tmp_path)
    result = run("ingest", str(source), "-o", str(tmp_path / "out.parquet"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["read"], report["written"], report["rejected"]) == (3, 3, 0)

    result = run("stats", str(tmp_path / "out.parquet"), "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["conversations"] == 3 and stats["roles"] == {"user": 3, "assistant": 3}
    assert stats["characters_per_message"]["user"]["max"] == len("question 0")


def test_ingest_to_a_hugging_face_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    result = run("ingest", str(sharegpt(tmp_path)), "-o", str(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    dataset = datasets.load_from_disk(str(tmp_path / "hf"))
    assert dataset.num_rows == 3
    assert dataset[0]["messages"][0]["content"] == "question 0"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".wildfeedback-")] == []


def test_a_bad_record_stops_with_its_location(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ['{"id": "x", "conversations": [{"from": "alien", "value": "hi"}]}'])
    result = run("ingest", str(source), "-o", str(tmp_path / "out.jsonl"))
    assert result.returncode == 1
    assert f"{source}, line 1: sharegpt: message 0: unknown role 'alien'" in " ".join(result.stderr.split())
    assert not (tmp_path / "out.jsonl").exists()


def test_skip_writes_errors_and_counts(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ['{"id": "ok", "conversations": [{"from": "human", "value": "hi"}]}', "{oops"])
    result = run("ingest", str(source), "-o", str(tmp_path / "out.jsonl"), "--on-error", "skip", "--json")
    report = json.loads(result.stdout)
    assert (report["read"], report["written"], report["rejected"]) == (1, 1, 1)
    assert report["errors_file"] == str(tmp_path / "out.errors.jsonl")
    assert json.loads((tmp_path / "out.errors.jsonl").read_text())["raw"] == "{oops\n"


def test_unknown_input_and_format_are_usage_errors(tmp_path: Path) -> None:
    result = run("ingest", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2 and "no such file or directory" in result.stderr
    result = run("ingest", str(sharegpt(tmp_path)), "-o", str(tmp_path / "o.jsonl"), "--format", "nope")
    assert result.returncode == 2 and "unknown format 'nope'" in result.stderr


def test_formats_lists_every_reader() -> None:
    result = run("formats")
    for name in ("wildchat", "lmsys", "sharegpt", "openai", "oasst", "uss", "hh-rlhf", "ifllm", "wildfeedback"):
        assert name in result.stdout


def test_stats_on_a_real_uss_file() -> None:
    result = run("stats", str(shared("uss", "SGD.txt")), "--json")
    stats = json.loads(result.stdout)
    assert stats["conversations"] == 1000
    assert stats["labelled_messages"]["ratings"] == 12833
