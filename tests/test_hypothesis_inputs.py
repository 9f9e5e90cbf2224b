"""Property-based checks: any bad option, action, hierarchy or victim output is a clear
ValueError/TypeError naming the problem, and anything accepted behaves correctly."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import LinearNet, tiny_world
from knockoff_env import BlackBox, KnockoffEnv, QuerySet, VictimOutputError
from knockoff_env.core.rewards import COMPONENTS, parse_reward

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ANY_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 60), st.floats(allow_nan=True),
                       st.text(max_size=3))


def env_with(**kwargs):
    (x, y), victim, hierarchy = tiny_world()
    options = dict(victim=victim, query_set=(x, y), hierarchy=hierarchy, knockoff=lambda: LinearNet(),
                   budget=20, device="cpu")
    options.update(kwargs)
    return KnockoffEnv(**options)


@FAST
@given(out=arrays(np.float64, st.tuples(st.integers(0, 3), st.integers(0, 5)),
                  elements=st.floats(-2, 2) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0])))
def test_victim_outputs_are_probabilities_or_refused(out):
    box = BlackBox(lambda images: torch.from_numpy(out), num_classes=3, device="cpu")
    try:
        y = box(torch.zeros(2, 6))
    except VictimOutputError as err:
        assert any(w in str(err) for w in ("shape", "classes", "NaN", "probability"))
        return
    assert y.shape == (2, 3) and torch.isfinite(y).all() and (y >= 0).all()
    assert torch.allclose(y.sum(1), torch.ones(2), atol=1e-3)


@FAST
@given(option=st.sampled_from(["budget", "queries_per_step", "diversity_window", "knockoff_lr",
                               "knockoff_momentum", "top_k", "decimals"]), value=ANY_SCALAR)
def test_env_scalar_options_are_checked(option, value):
    kwargs = {option: value}
    if option in ("top_k", "decimals"):
        kwargs["output"] = "top_k" if option == "top_k" else "rounded"
    try:
        env = env_with(**kwargs)
    except (ValueError, TypeError) as err:
        assert option in str(err) or {"diversity_window": "Δ", "top_k": "top_k"}.get(option, "?") in str(err)
        return
    env.reset(seed=0)
    env.step(env.action_space.sample())
    if option == "budget" and value is not None:
        assert 1 <= env.budget == value <= 30


@FAST
@given(reward=st.one_of(st.text(max_size=10), st.sampled_from(("all",) + COMPONENTS),
                        st.lists(st.sampled_from(COMPONENTS + ("speed", "")), max_size=4),
                        st.dictionaries(st.sampled_from(COMPONENTS + ("speed",)), ANY_SCALAR, max_size=3)))
def test_reward_specs_are_checked(reward):
    try:
        weights = parse_reward(reward)
    except (ValueError, TypeError) as err:
        assert "reward" in str(err)
        return
    assert weights and set(weights) <= set(COMPONENTS) and all(w > 0 for w in weights.values())


LABEL = st.one_of(st.integers(-1, 7), st.floats(allow_nan=True), st.text(max_size=2), st.none())


@FAST
@given(hierarchy=st.dictionaries(st.text(max_size=3), st.lists(LABEL, max_size=5), max_size=4))
def test_hierarchies_are_checked(hierarchy):
    labels = np.repeat(np.arange(6), 2)
    try:
        qs = QuerySet(torch.zeros(12, 2), labels, hierarchy)
    except ValueError as err:
        assert any(w in str(err) for w in ("hierarchy", "coarse node", "label"))
        return
    flat = [int(z) for members in hierarchy.values() for z in members]
    assert len(flat) == len(set(flat)) and set(range(6)) <= set(flat)
    assert qs.remaining().sum() == 12


@FAST
@given(actions=st.lists(st.one_of(st.integers(-2, 8), st.floats(allow_nan=True),
                                  arrays(st.sampled_from([np.int64, np.float32]), st.integers(0, 3),
                                         elements=st.integers(-2, 8))), min_size=1, max_size=12),
       flat=st.booleans())
def test_actions_are_checked_and_never_repeat_an_image(actions, flat):
    env = env_with(action_mode="flat" if flat else "hierarchical")
    env.reset(seed=0)
    for action in actions:
        try:
            _, _, terminated, _, info = env.step(action)
        except ValueError as err:
            assert "outside the action space" in str(err)
            continue
        if terminated:
            break
    indices, outputs = env.transfer_set.view()
    assert len(indices) == env.spent <= env.budget and len(np.unique(indices)) == len(indices)
    assert np.allclose(outputs.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("bad", ["nan", "wide", "negative", "unnormalised"])
def test_env_step_with_a_bad_victim_names_the_problem(bad):
    def victim(images):
        y = torch.full((len(images), 3), 1 / 3)
        if bad == "nan":
            y[0, 0] = float("nan")
        elif bad == "wide":
            y = torch.full((len(images), 4), 0.25)
        elif bad == "negative":
            y[:, 0], y[:, 1] = -0.5, 7 / 6
        else:
            y = y * 2
        return y

    env = env_with(victim=BlackBox(victim, num_classes=3, device="cpu"))
    env.reset(seed=0)
    with pytest.raises(VictimOutputError, match="NaN|classes|probability distribution"):
        env.step(env.action_space.sample())
    assert len(env.transfer_set) == env.spent == 0
