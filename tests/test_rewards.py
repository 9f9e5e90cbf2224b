"""Rewards against values computed by hand."""
import math

import numpy as np
import pytest
import torch

from knockoff_env.core.rewards import RewardFunction, certainty, diversity, parse_reward
from knockoff_env.training.losses import soft_cross_entropy


def test_certainty_is_margin_of_top_two():
    y = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [0.1, 0.3, 0.6]])
    assert certainty(y).tolist() == pytest.approx([0.5, 0.0, 0.3])


def test_diversity_sums_positive_excess_over_window_mean():
    y = torch.tensor([[0.7, 0.2, 0.1]])
    assert diversity(y, torch.tensor([0.5, 0.3, 0.2])).item() == pytest.approx(0.2)


def test_soft_cross_entropy_matches_hand_value_and_is_finite_for_extreme_logits():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert soft_cross_entropy(logits, torch.tensor([[1.0, 0, 0]])).item() == pytest.approx(math.log(2))
    extreme = torch.tensor([[1e4, -1e4, 0.0]])
    value = soft_cross_entropy(extreme, torch.tensor([[0.0, 1.0, 0.0]]))
    assert torch.isfinite(value).all() and value.item() > 20


def _step(fn, row, loss=0.0):
    return fn(torch.tensor([row]), torch.tensor([loss]))


def test_diversity_uses_a_window_of_the_last_delta_queries():
    fn = RewardFunction({"diversity": 1.0}, num_classes=3, window=3)
    r1, _ = _step(fn, [1.0, 0, 0])      # ȳ = y1                  -> 0
    r2, _ = _step(fn, [0, 1.0, 0])      # ȳ = (.5, .5, 0)         -> .5
    r3, _ = _step(fn, [0, 0, 1.0])      # ȳ = (1/3, 1/3, 1/3)     -> 2/3
    r4, _ = _step(fn, [0, 0, 1.0])      # window y2..y4: (0, 1/3, 2/3) -> 1/3 (whole history would give .5)
    assert [r1, r2, r3, r4] == pytest.approx([0.0, 0.5, 2 / 3, 1 / 3])


def test_window_counts_images_within_a_batch():
    fn = RewardFunction({"diversity": 1.0}, num_classes=2, window=2)
    fn(torch.tensor([[1.0, 0.0]]), torch.zeros(1))
    # batch of two: the window now holds exactly these two, ȳ = (.5, .5); each image excess .5
    value, _ = fn(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2))
    assert value == pytest.approx(0.5)


def test_single_component_is_raw_and_all_is_mean_of_running_min_max():
    single = RewardFunction({"loss": 1.0}, num_classes=2)
    assert _step(single, [0.5, 0.5], loss=3.0)[0] == pytest.approx(3.0)

    fn = RewardFunction(parse_reward("all"), num_classes=2, window=25)
    r1, parts1 = _step(fn, [0.9, 0.1], loss=1.0)
    assert r1 == pytest.approx(0.5)  # nothing to compare with yet: every component at mid-range
    assert parts1["certainty"] == pytest.approx(0.8)
    r2, parts2 = _step(fn, [0.5, 0.5], loss=3.0)
    # certainty 0 is the new minimum -> 0; loss 3 the new maximum -> 1;
    # diversity: ȳ=(.7,.3), y=(.5,.5) -> .2, range [0 (step 1), .2] -> 1
    assert parts2["certainty_normalised"] == pytest.approx(0.0)
    assert parts2["loss_normalised"] == pytest.approx(1.0)
    assert parts2["diversity"] == pytest.approx(0.2)
    assert r2 == pytest.approx((0 + 1 + 1) / 3)


def test_weighted_subset():
    fn = RewardFunction(parse_reward({"certainty": 3, "loss": 1}), num_classes=2)
    _step(fn, [0.9, 0.1], loss=1.0)
    value, parts = _step(fn, [0.6, 0.4], loss=2.0)  # cert .2 (min) -> 0, loss 2 (max) -> 1
    assert value == pytest.approx((3 * 0 + 1 * 1) / 4)


@pytest.mark.parametrize("bad, message", [
    ("speed", "unknown reward"), (["certainty", "fun"], "unknown reward"),
    ({"loss": -1}, "≥ 0"), ({"loss": float("nan")}, "finite"), ({"loss": 0}, "positive weight"), (3, "must be"),
])
def test_bad_reward_specs_are_refused(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        parse_reward(bad)


def test_state_round_trip_continues_identically():
    a = RewardFunction(parse_reward("all"), num_classes=3, window=4)
    rng = np.random.default_rng(0)
    rows = torch.tensor(rng.dirichlet(np.ones(3), size=10), dtype=torch.float32)
    for i in range(5):
        a(rows[i:i + 1], torch.tensor([float(i)]))
    b = RewardFunction(parse_reward("all"), num_classes=3, window=4)
    b.load_state_dict(a.state_dict())
    for i in range(5, 10):
        assert a(rows[i:i + 1], torch.tensor([1.0]))[0] == b(rows[i:i + 1], torch.tensor([1.0]))[0]
