"""Calibration: vector scaling recovers how often each label really occurs, thresholds
respect the precision asked for, and the whole survives a round trip through JSON."""

from __future__ import annotations

import json

import numpy as np

from wildfeedback.signals.calibration import Calibration, choose_threshold, fit_calibration, softmax


def scored(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Logits of an over-eager model: the true labels come from softmax(true logits); the
    model's logits are those plus a bias towards DSAT, times two (overconfident)."""
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(n, 3)) * 1.5 + np.array([-1.0, 0.0, 1.5])
    probabilities = softmax(true)
    gold = [("SAT", "DSAT", "NEUTRAL")[rng.choice(3, p=p)] for p in probabilities]
    return 2.0 * (true + np.array([0.0, 1.0, 0.0])), gold


def test_vector_scaling_brings_the_mean_probability_back_to_the_true_rates() -> None:
    logits, gold = scored()
    raw = softmax(logits).mean(axis=0)
    calibration = fit_calibration(logits, gold)
    fitted = calibration.probabilities(logits).mean(axis=0)
    truth = np.array([np.mean([g == label for g in gold]) for label in ("SAT", "DSAT", "NEUTRAL")])
    assert abs(raw[1] - truth[1]) > 0.1  # the model over-predicts DSAT ...
    np.testing.assert_allclose(fitted, truth, atol=0.01)  # ... calibration does not
    assert 1.6 < calibration.temperature < 2.4


def test_the_dsat_threshold_reaches_the_precision_asked_for() -> None:
    logits, gold = scored(seed=1)
    calibration = fit_calibration(logits, gold, min_precision=0.8)
    p = calibration.probabilities(logits)
    labels = calibration.labels(p)
    chosen = [g for g, label in zip(gold, labels, strict=True) if label == "DSAT"]
    assert chosen and np.mean([g == "DSAT" for g in chosen]) >= 0.8
    assert choose_threshold(np.array([0.9, 0.8]), np.array([False, False]), 0.5) is None  # nothing to find


def test_labels_order_and_json_round_trip() -> None:
    calibration = Calibration(1.2, (0.1, -0.2, 0.1), dsat_threshold=0.6, sat_threshold=0.3)
    p = np.array([[0.35, 0.6, 0.05], [0.34, 0.3, 0.36], [0.2, 0.3, 0.5]])
    assert calibration.labels(p) == ["DSAT", "SAT", "NEUTRAL"]  # DSAT first, then SAT, else NEUTRAL
    assert Calibration().labels(p) == ["DSAT", "NEUTRAL", "NEUTRAL"]  # no thresholds: argmax
    assert Calibration.from_dict(json.loads(json.dumps(calibration.as_dict()))) == calibration
    assert Calibration.from_dict(None) == Calibration()
