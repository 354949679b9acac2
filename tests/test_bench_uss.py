"""`bench uss` on a small slice of the real USS files (1 seed), so CI stays quick."""

from __future__ import annotations

import pytest

from tests.conftest import shared

pytest.importorskip("sentence_transformers")


def test_quick_uss_bench_runs_on_a_slice():
    from wildfeedback.bench.uss import PUBLISHED, run_uss_bench
    from wildfeedback.signals.encoder import shared_encoder

    root = shared("uss", "MWOZ.txt").parents[1]
    results = run_uss_bench(1, sets=("MWOZ",), data=root, limit=40, train_frac=0.25, test_frac=0.5,
                            extra=("uss",), folds=3, generalisation=False, encoder=shared_encoder())
    mwoz = results["sets"]["MWOZ"]
    (seed,) = mwoz["seeds"]
    assert seed["n_train"] == 10 and seed["n_test"] == 20
    assert mwoz["pretrained_on"] == ["SGD", "ReDial", "CCPE"]  # never the tested set
    for level in ("conversation", "turn"):
        for key in ("precision", "recall", "f1"):
            assert 0.0 <= mwoz["summary"][level][key]["mean"] <= 100.0
    assert sum(mwoz["gold_conversations"].values()) == 40
    assert PUBLISHED["SPUR (GPT-4, learned rubric)"]["MWOZ"] == 59.0


def test_split_is_disjoint_and_seeded():
    from wildfeedback.bench.uss import _split

    ids = [str(i) for i in range(1000)]
    train, test = _split(ids, 3, 0.05, 0.8)
    assert len(train) == 50 and len(test) == 800 and not set(train) & set(test)
    assert _split(ids, 3, 0.05, 0.8) == (train, test)
    assert _split(ids, 4, 0.05, 0.8)[0] != train


def test_the_ablations_plain_probe_and_argmax_rule_run_on_a_slice():
    from wildfeedback.bench.uss import ABLATION, run_uss_bench
    from wildfeedback.signals.encoder import shared_encoder

    root = shared("uss", "MWOZ.txt").parents[1]
    options = ABLATION["5% only, user-turn embedding (plain probe, C 1), argmax rule"]
    results = run_uss_bench(1, sets=("MWOZ",), data=root, limit=40, train_frac=0.25, test_frac=0.5, folds=3,
                            generalisation=False, encoder=shared_encoder(), **options)
    assert results["protocol"]["features"] == "user" and results["protocol"]["rule"] == "argmax"
    assert results["sets"]["MWOZ"]["pretrained_on"] == []  # the 5% alone
    assert 0.0 <= results["sets"]["MWOZ"]["summary"]["conversation"]["f1"]["mean"] <= 100.0
    with pytest.raises(ValueError, match="rule must be"):
        run_uss_bench(1, sets=("MWOZ",), data=root, limit=10, rule="vote")
