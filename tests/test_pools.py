"""Label pools shuffled lazily: a draw settles only what it takes, the order is a uniform
permutation fixed by the pool's seed, and states saved with whole-pool shuffles still load."""
from collections import Counter

import numpy as np
import pytest
import torch

from knockoff_env.data.query_set import QuerySet
from knockoff_env.data.shuffle import CHUNK, WHOLE, settle


def query_set(sizes=(3, 50_000, 7)):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    qs = QuerySet(torch.zeros(len(labels), 1), labels)
    qs.reset(np.random.default_rng(0))
    return qs


def test_a_draw_from_a_large_pool_settles_one_chunk_not_the_pool():
    qs = query_set()
    drawn = qs.draw(1, 4)
    assert qs.settled[1] - qs.pool_starts[1] == CHUNK  # of 50,000
    assert (qs.positions[drawn] == 1).all() and len(set(drawn.tolist())) == 4
    untouched = qs.order[qs.pool_starts[1] + CHUNK:qs.pool_ends[1]]
    assert (np.diff(untouched) > 0).mean() > 0.99  # the rest still (almost) in its canonical order


@pytest.mark.parametrize("n", [WHOLE + 1000, 1000])  # settled a chunk at a time; shuffled whole
def test_the_order_is_fixed_by_the_seed_whatever_the_steps_it_is_settled_in(n):
    whole = np.arange(n)
    settle(whole, 0, n, seed=7)
    assert sorted(whole.tolist()) == list(range(n)) and not np.array_equal(whole, np.arange(n))
    for step in (1, 5, CHUNK, 200):
        pool, done = np.arange(n), 0
        while done < n:
            done = settle(pool, done, done + step, seed=7)
        assert np.array_equal(pool, whole)
    other = np.arange(n)
    settle(other, 0, n, seed=8)
    assert not np.array_equal(other, whole)


def test_every_order_is_equally_likely_chunk_by_chunk():
    counts = Counter()
    for seed in range(6000):
        pool = np.arange(WHOLE + 1)  # a pool settled a chunk at a time, from its last three positions
        settle(pool, WHOLE - 2, WHOLE + 1, seed)
        counts[tuple(pool[-3:].tolist())] += 1
    assert len(counts) == 6
    assert all(abs(c / 6000 - 1 / 6) < 0.02 for c in counts.values()), counts  # binomial sd 0.005


def test_draws_take_each_image_once_and_peek_predicts_them_including_new_pools():
    qs = query_set((10, 300, 9))
    qs.draw(1, 4)
    plan = [1, 0, 1, 2, 0, 1, 0, 0]
    predicted = qs.peek(plan, 3)
    drawn = [qs.draw(p, 3).copy() for p in plan]
    assert all(np.array_equal(a, b) for a, b in zip(predicted, drawn))
    taken = np.concatenate(drawn)
    assert len(set(taken.tolist())) == len(taken) == 9 + 10 + 3  # label 0 holds 10: its 4th draw takes one
    rest = [qs.draw(0, 5) for _ in range(2)] + [qs.draw(2, 100)]
    assert len(rest[0]) == len(rest[1]) == 0 and len(rest[2]) == 9 - 3


def test_a_state_saved_with_whole_pool_shuffles_loads_and_goes_on_drawing_from_its_order():
    qs = query_set((10, 300, 9))
    old = np.random.default_rng(1)
    order = qs.order.copy()
    order[10:310] = old.permutation(order[10:310])  # label 1 shuffled whole and drawn from, as before
    cursor = qs.pool_starts.copy()
    cursor[1] += 8
    qs.load_state_dict({"order": order, "cursor": cursor, "shuffled": np.array([False, True, False])},
                       np.random.default_rng(2))
    assert np.array_equal(qs.draw(1, 4), order[18:22])  # the saved order, not a new shuffle
    assert qs.shuffled.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="do not fit this query set"):
        qs.load_state_dict({"order": order, "cursor": cursor, "shuffled": np.array([True])}, old)


def test_whole_pool_mode_draws_as_runs_journaled_before_lazy_pools():
    qs = query_set((10, 300, 9))
    qs.lazy = False
    rng = np.random.default_rng(3)
    qs.reset(np.random.default_rng(3))
    expected = qs.order[10:310].copy()
    rng.shuffle(expected)
    assert np.array_equal(qs.draw(1, 4), expected[:4]) and qs.settled[1] == qs.pool_ends[1]
    assert np.array_equal(qs.peek([1], 4)[0], expected[4:8])
