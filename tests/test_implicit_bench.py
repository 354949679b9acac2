"""`bench ifllm` on a slice of the real IFLLM data (first sessions of the archive, 2 folds), so CI stays quick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared

pytest.importorskip("sentence_transformers")


def test_quick_ifllm_bench_prints_its_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from wildfeedback.bench.ifllm import main

    root = shared("ifllm", "ifllm_pairwise_behavior.tar.xz").parents[1]
    results = main(["--data", str(root), "--limit-sessions", "14", "--folds", "2", "--importance-repeats", "1",
                    "--plot", str(tmp_path / "importance.png"), "--export", str(tmp_path / "export"),
                    "--json", str(tmp_path / "results.json"), "--quiet"])
    out = capsys.readouterr().out
    assert "IFLLM pairwise preference" in out and "user-grouped" in out and "random" in out
    assert "Published (IFLLM): text 55%, text + gaze + mouse 64%" in out and "Machine: " in out
    runs = {(r["protocol"], r["feature_set"]): r for r in results["results"]}
    assert set(runs) == {(p, f) for p in ("user-grouped", "random") for f in ("text", "behaviour", "fused")}
    n = results["selection"]["balanced"]
    assert n >= 20 and results["selection"]["left_preferred"] >= n // 2
    for r in runs.values():
        assert r["n"] == n and r["correct"] == round(r["accuracy"] * n)
        low, high = r["wilson_95"]
        assert 0.0 <= low <= r["accuracy"] <= high <= 1.0
        assert len(r["chosen"]) == 2
    assert results["archive"]["rejected"] == 0 and results["archive"]["tasks"] >= 14
    assert results["features"]["behaviour_constant_dropped"]  # IFLLM has no copy / thumbs / dwell events
    assert (tmp_path / "importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["importance"]["top_features"] and "gaze" in results["importance"]["families"]
    export = results["export"]
    assert export["pairs"] == results["selection"]["pairs_with_behaviour"] and export["out_of_fold"] == n
    dpo = (tmp_path / "export" / "dpo" / "train.jsonl").read_text().splitlines()
    assert len(dpo) == export["pairs"] and 0.5 <= json.loads(dpo[0])["confidence"] <= 1.0
    assert json.loads((tmp_path / "results.json").read_text())["selection"]["balanced"] == n


def test_the_command_is_mounted():
    script = str(Path(sys.executable).with_name("wildfeedback"))
    done = subprocess.run([script, "bench", "ifllm", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--limit-sessions" in done.stdout and "--export" in done.stdout
