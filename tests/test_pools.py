"""Label pools shuffled lazily: a draw settles only what it takes, the order is a uniform
permutation fixed by the pool's seed (under each scheme, as a plain Fisher–Yates over that
scheme's uniforms gives it), and states and runs from older schemes still load and draw as before."""
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from knockoff_env.data.query_set import QuerySet
from knockoff_env.data.shuffle import CHUNK, SCHEMES, WHOLE, Uniforms, settle


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


def fisher_yates(n: int, seed: int, scheme: str, upto: int) -> np.ndarray:
    """The oracle: the first ``upto`` swaps of a front-to-back Fisher–Yates over ``range(n)``, one
    swap at a time, each chunk's uniforms from a generator made afresh as the scheme says."""
    if scheme == "keyed":
        def generator(chunk):
            return np.random.Generator(np.random.Philox(key=seed, counter=[0, chunk or 0, 0, 0]))
    else:
        def generator(chunk):
            return np.random.default_rng(seed if chunk is None else (seed, chunk))
    pool = np.arange(n)
    if n <= WHOLE:
        generator(None).shuffle(pool)
        return pool
    for i in range(upto):
        u = generator(i // CHUNK).random(CHUNK)[i % CHUNK]
        j = i + min(int(u * (n - i)), n - 1 - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool


@pytest.mark.parametrize("scheme", ["keyed", "lazy"])
@pytest.mark.parametrize("n", [WHOLE + 1000, 40_000, 1000])  # settled a chunk at a time; shuffled whole
def test_the_order_is_fixed_by_the_seed_whatever_the_steps_it_is_settled_in(n, scheme):
    uniforms, upto = Uniforms(scheme), min(n, 3 * CHUNK + 5)
    whole = np.arange(n)
    settle(whole, 0, upto, 7, uniforms)
    assert np.array_equal(whole[:upto], fisher_yates(n, 7, scheme, upto)[:upto])
    assert sorted(whole.tolist()) == list(range(n)) and not np.array_equal(whole, np.arange(n))
    for step in (1, 5, CHUNK, 200):
        pool, done = np.arange(n), 0
        while done < upto:
            done = settle(pool, done, done + step, 7, uniforms)
        assert np.array_equal(pool[:upto], whole[:upto])
    other = np.arange(n)
    settle(other, 0, upto, 8, uniforms)
    assert not np.array_equal(other, whole)


def test_the_schemes_give_different_orders_and_an_unknown_one_is_refused():
    orders = []
    for scheme in ("keyed", "lazy"):
        pool = np.arange(WHOLE + 10)
        settle(pool, 0, CHUNK, 3, Uniforms(scheme))
        orders.append(pool[:CHUNK])
    assert not np.array_equal(*orders)
    with pytest.raises(ValueError, match="not a pool scheme"):
        Uniforms("shuffled")
    assert set(SCHEMES) == {"keyed", "lazy", "whole"}


@pytest.mark.parametrize("scheme", ["keyed", "lazy"])
def test_every_order_is_equally_likely_chunk_by_chunk(scheme):
    counts, uniforms = Counter(), Uniforms(scheme)
    for seed in range(6000):
        pool = np.arange(WHOLE + 1)  # a pool settled a chunk at a time, from its last three positions
        settle(pool, WHOLE - 2, WHOLE + 1, seed, uniforms)
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
    qs.pools = "whole"
    rng = np.random.default_rng(3)
    qs.reset(np.random.default_rng(3))
    expected = qs.order[10:310].copy()
    rng.shuffle(expected)
    assert np.array_equal(qs.draw(1, 4), expected[:4]) and qs.settled[1] == qs.pool_ends[1]
    assert np.array_equal(qs.peek([1], 4)[0], expected[4:8])


def test_a_run_journaled_under_an_older_scheme_resumes_drawing_as_it_began(tmp_path):
    from test_batched import transfer, uneven_env
    from test_interrupt import SigintAt

    from agents import RandomAgent, run_attack

    def run(scheme, **kwargs):
        env, _ = uneven_env(budget=40)
        if scheme:
            env.query_set.pools = scheme
        agent = RandomAgent(env)
        at = 4 if kwargs.get("checkpoint_every") else 0  # the journal names the agent: wrapped alike on resume
        result = run_attack(env, SigintAt(agent, at=at), seed=0, progress=False, batch=False, logdir=tmp_path,
                            **kwargs)
        return env, result

    lazy, keyed = transfer(run("lazy")[0]), transfer(run("keyed")[0])
    assert not np.array_equal(lazy[0], keyed[0])  # the schemes draw differently from the same seed
    shutil.rmtree(tmp_path)
    stopped, result = run("lazy", checkpoint_every=2)
    assert result["interrupted"] and result["queries"] == 16
    resumed, result = run(None, resume=True)  # a new env's default scheme is "keyed"
    assert resumed.query_set.pools == "lazy" and result["queries"] == 40
    assert np.array_equal(transfer(resumed)[0], lazy[0])
