"""The pair set (balancing, user centring), the reward model and its evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wildfeedback.implicit.dataset import PairExample, balanced_selection, behaviour_matrix, user_centred
from wildfeedback.implicit.model import (
    TEXT_SCORE,
    ImplicitRewardModel,
    PairFeatures,
    cluster_bootstrap_interval,
    cross_validate,
    family_of,
    permutation_importances,
    wilson_interval,
)
from wildfeedback.implicit.text import form_features, form_names
from wildfeedback.schema import Conversation


def example(user: str, label: int | None, samples: int, **behaviour: float) -> PairExample:
    conversation = Conversation.model_validate({
        "id": f"c-{user}", "source": "ifllm", "user_id": user,
        "messages": [{"role": "user", "content": "q", "index": 0},
                     {"role": "assistant", "content": "l", "index": 1, "alternatives": [{"content": "r"}]}],
    })
    return PairExample(conversation, 1, user, "q", "l", "r", label, samples, dict(behaviour))


def test_balanced_selection_counts_every_step():
    examples = ([example("a", 1, 50)] * 5 + [example("b", 0, 50)] * 3 + [example("c", 0, 5)] * 4
                + [example("d", None, 80)] * 2)
    selection = balanced_selection(examples, min_samples=20, seed=0)
    assert selection.counts == {"pairs_with_behaviour": 14, "with_a_choice": 12,
                                "with_20+_samples_over_replies": 8, "left_preferred": 5, "right_preferred": 3,
                                "balanced": 6, "users": 2}
    labels = [examples[i].label for i in selection.indices]
    assert labels.count(0) == labels.count(1) == 3
    assert list(selection.indices) == sorted(selection.indices)
    assert list(balanced_selection(examples, 20, seed=0).indices) == list(selection.indices)


def test_user_centring_subtracts_the_mean_of_the_users_other_queries():
    rows = [example("a", 1, 50, share_diff=1.0, y=7.0), example("a", 0, 50, share_diff=3.0, y=7.0),
            example("a", None, 50, share_diff=5.0, y=7.0), example("b", 1, 50, share_diff=10.0, y=1.0),
            example("c", 1, 50, share_diff=2.0, y=1.0), example("c", 1, 50, share_diff=math.nan, y=1.0)]
    values, names = behaviour_matrix(rows)
    assert names == ["share_diff", "y"]
    centred, centred_names = user_centred(values, names, [r.user_id for r in rows])
    assert centred_names == ["share_diff_user_centred"]  # only the comparisons are centred
    got = centred[:, 0].tolist()
    assert got[:3] == [1 - 4, 3 - 3, 5 - 2]  # each minus the mean of the user's two others
    assert math.isnan(got[3])  # user b has no other query
    assert math.isnan(got[4]) and math.isnan(got[5])  # c's other value is missing / c's own is missing
    with pytest.raises(ValueError, match="differ"):
        behaviour_matrix([example("a", 1, 1, x=1.0), example("a", 1, 1, z=1.0)])


def test_form_features_by_hand():
    text = "# Title\n\nSome **bold** and **more**.\n- one\n- two\n1. first\n2) second\n"
    assert form_features(text) == [math.log1p(len(text)), 6.0, 2.0, 2.0, 2.0, 1.0]
    assert len(form_names()) == 7


def test_wilson_interval_by_hand():
    low, high = wilson_interval(7, 10)
    assert (low, high) == pytest.approx((0.3968, 0.8922), abs=1e-4)
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_user_bootstrap_interval():
    assert cluster_bootstrap_interval(np.ones(6), list("aabbcc")) == (1.0, 1.0)
    low, high = cluster_bootstrap_interval(np.array([1, 1, 0, 0.0]), ["a", "a", "b", "b"], resamples=500)
    assert low == 0.0 and high == 1.0  # two users, one always right, one always wrong


def separable(n_users: int = 12, per_user: int = 10, seed: int = 0) -> tuple[PairFeatures, np.ndarray, np.ndarray]:
    """Pairs whose label follows one behaviour column (with noise) and, more weakly, the text embedding."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    y = np.tile([0, 1], n // 2)
    signal = (2 * y - 1) + rng.normal(0, 0.8, n)
    behaviour = np.column_stack([signal, rng.normal(size=n), np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n))])
    embedding = np.outer(2 * y - 1, np.ones(8)) * 0.3 + rng.normal(size=(n, 8))
    form = rng.normal(size=(n, 7))
    groups = np.repeat([f"u{k}" for k in range(n_users)], per_user)
    names = ["gaze_share_diff", "mouse_noise", "window_missing"]
    return PairFeatures(behaviour, names, form, form_names(), embedding), y, groups


@pytest.mark.parametrize("feature_set", ["text", "behaviour", "fused"])
def test_model_learns_calibrated_probabilities(feature_set: str):
    features, y, groups = separable()
    rows = np.arange(len(y))
    model = ImplicitRewardModel(feature_set).fit(features, rows[:90], y[:90], groups[:90])
    assert model.chosen in model.inner_log_loss
    p = model.predict_proba(features, rows[90:])
    assert p.shape == (30,) and np.all((p >= 0) & (p <= 1))
    assert len(model.design_names(features)) == model.design(features, rows[90:]).shape[1]
    if feature_set != "text":
        assert ((p >= 0.5) == y[90:]).mean() >= 0.75
    if feature_set == "fused":
        assert model.design_names(features)[-1] == TEXT_SCORE


def test_grouped_folds_keep_users_apart_and_random_folds_do_not():
    features, y, groups = separable()
    rows = np.arange(len(y))
    grouped = cross_validate(features, rows, y, groups, "behaviour", "user-grouped", folds=3)
    for test in grouped.test_rows:
        train = np.setdiff1d(rows, test)
        assert not set(groups[test]) & set(groups[train])
    assert sorted(np.concatenate(grouped.test_rows).tolist()) == rows.tolist()
    random = cross_validate(features, rows, y, groups, "behaviour", "random", folds=3)
    assert any(set(groups[t]) & set(groups[np.setdiff1d(rows, t)]) for t in random.test_rows)
    summary = grouped.summary(y, groups.tolist())
    assert summary["n"] == len(y) and summary["accuracy"] >= 0.75
    assert summary["wilson_95"][0] < summary["accuracy"] < summary["wilson_95"][1]
    with pytest.raises(ValueError, match="unknown protocol"):
        cross_validate(features, rows, y, groups, "behaviour", "leave-nothing-out")


def test_permutation_importance_finds_the_signal():
    features, y, groups = separable()
    rows = np.arange(len(y))
    cv = cross_validate(features, rows, y, groups, "fused", "user-grouped", folds=3)
    names, per_feature, per_family = permutation_importances(cv, features, rows, y, repeats=3)
    assert per_feature.shape == (3, len(names))
    assert names[int(np.argmax(per_feature.mean(axis=0)))] == "gaze_share_diff"
    assert per_family["gaze"].mean() > per_family["mouse"].mean()
    assert [family_of(n) for n in ("gaze_mouse_agreement", "gaze_share_diff_user_centred", "text_bold_diff",
                                   TEXT_SCORE, "window_s", "product_copies_left")] == [
        "gaze+mouse", "user-centred", "text", "text", "window", "product"]
