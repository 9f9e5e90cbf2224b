"""The duel's players (issue 24): fixed, triggered and learning defenders, the episode loop, the figure."""
import numpy as np
import pytest
from test_duel import benign_set, duel

from agents.duel import (
    BanditDefender,
    FixedDefender,
    TriggeredDefender,
    evaluate_defender,
    play_episode,
    plot_training,
    train_defender,
)
from agents.duel.figures import running_mean
from knockoff_env.duel import FEATURES, GLOBAL_FEATURES


def observation(d, **per_slot):
    """A defender observation of ``d``'s layout: ``feature=[value per slot]``; volume 1 unless given."""
    rows = np.zeros((d.num_clients, len(FEATURES)), np.float32)
    rows[:, FEATURES.index("volume")] = 1.0
    for name, values in per_slot.items():
        rows[:, FEATURES.index(name)] = values
    return np.concatenate([rows.reshape(-1), np.zeros(len(GLOBAL_FEATURES), np.float32)])


def test_a_fixed_defender_answers_everyone_with_its_entry():
    d = duel()
    fixed = FixedDefender(d, "noise")
    assert fixed.act(observation(d)).tolist() == [2, 2] and fixed.name == "noise:sigma=0.3"
    with pytest.raises(ValueError, match="index in"):
        FixedDefender(d, 9)


def test_a_triggered_defender_switches_a_client_once_and_for_good():
    d = duel()
    trigger = TriggeredDefender(d, strong="mad_argmax", threshold=0.9)
    trigger.reset()
    not_ready = observation(d, prada_statistic=[0.5, 0.5], prada_ready=[0, 0])
    assert trigger.act(not_ready).tolist() == [0, 0]  # a statistic not yet tested does not count
    assert trigger.act(observation(d, prada_statistic=[0.95, 0.85], prada_ready=[1, 1])).tolist() == [0, 1]
    assert trigger.act(observation(d, prada_statistic=[0.99, 0.99], prada_ready=[1, 1])).tolist() == [0, 1]
    trigger.reset()
    assert trigger.act(observation(d, prada_statistic=[0.99, 0.99], prada_ready=[1, 1])).tolist() == [0, 0]
    by_confidence = TriggeredDefender(d, feature="confidence_all", threshold=0.99)
    silent = observation(d, confidence_all=[0.5, 0.5], volume=[0, 1])
    assert by_confidence.act(silent).tolist() == [0, 4]  # a client that has sent nothing is not judged
    with pytest.raises(ValueError, match="unknown client statistic"):
        TriggeredDefender(d, feature="knockoff_accuracy")


def test_the_bandits_contexts_and_its_update_are_the_papers_rule():
    d = duel()
    bandit = BanditDefender(d, edges=(0.5, 0.9), alpha=0.4, seed=0)
    obs = observation(d, confidence_all=[0.3, 0.95], volume=[1, 0])
    assert bandit.contexts(obs).tolist() == [1, 0]
    assert bandit.contexts(observation(d, confidence_all=[0.5, 0.9])).tolist() == [2, 3]  # [lo, hi)
    assert len(bandit.context_names()) == 4
    bandit.reset(seed=1)
    bandit.act(obs)
    bandit.end_episode(-1.0)  # the first return only sets the baseline
    assert not bandit.preferences.any() and bandit.baseline == -1.0
    bandit.reset(seed=2)
    table = bandit.table.copy()
    bandit.act(obs)
    bandit.end_episode(0.0)  # advantage +1 for the two contexts used
    expected = np.zeros(len(d.menu)) - 0.4 * 1.0 / len(d.menu)
    for c in (0, 1):
        want = expected.copy()
        want[table[c]] += 0.4
        assert np.allclose(bandit.preferences[c], want)
    assert not bandit.preferences[2:].any() and bandit.baseline == pytest.approx(-0.8)


def test_the_bandit_learns_a_response_table_from_returns():
    """Returns that pay refusing the client in context 1 and answering the one in context 4
    truly: the greedy table learns both, and leaves unused contexts alone."""
    d = duel()
    bandit = BanditDefender(d, alpha=0.5, seed=0)
    obs = observation(d, confidence_all=[0.5, 0.9995])
    refuse, none = d.menu.index("refuse"), d.menu.index("none")
    for episode in range(150):
        bandit.reset(seed=episode)
        answer = bandit.act(obs)
        bandit.end_episode(float(answer[0] == refuse) + float(answer[1] == none))
    bandit.reset(greedy=True)
    assert bandit.act(obs).tolist() == [refuse, none]
    assert bandit.policy()[1, refuse] > 0.8 and bandit.policy()[5, none] > 0.8
    assert not bandit.preferences[[0, 2, 3, 4]].any()
    bandit.end_episode(5.0)  # greedy episodes learn nothing
    assert not bandit.preferences[[0, 2, 3, 4]].any()


def test_an_episode_against_a_refusing_owner_leaves_the_knockoff_untrained():
    d = duel()
    d.reset(seed=1000 * 0 + 999)
    untrained = d.knockoff.evaluate()["knockoff_accuracy"]
    result = evaluate_defender(d, FixedDefender(d, "refuse"), seed=0, retrain_epochs=2)
    assert result["transfer_set_size"] == 0 and not result["retrained"] and result["queries"] == 24
    assert result["knockoff_accuracy"] == untrained and result["answered"]["attacker"]["refuse"] == 24
    x, labels = benign_set()
    right = float((d.knockoff.victim.victim(x).argmax(1) == labels).float().mean())
    assert result["benign_cost"] == pytest.approx(right + 2.0)
    open_result = play_episode(d, FixedDefender(d, "none"), seed=1, retrain_epochs=2, train=False)
    assert open_result["retrained"] and open_result["transfer_set_size"] == 24 and open_result["benign_cost"] == 0
    assert open_result["agreement_curve"][0][0] == 0 and open_result["agreement_curve"][-1][0] == 24


def test_training_plays_episodes_with_their_seeds_and_the_figure_is_drawn(tmp_path):
    d = duel()
    bandit = BanditDefender(d, seed=0)
    seen = []
    history = train_defender(d, bandit, 3, seed=2, on_episode=lambda e, r: seen.append((e, r["seed"])))
    assert seen == [(0, 2000), (1, 2001), (2, 2002)] and [r["episode"] for r in history] == [0, 1, 2]
    assert bandit.preferences.any()  # it learned from the returns after the first
    fixed = [[evaluate_defender(d, FixedDefender(d, "none"), seed=s, retrain_epochs=0)] for s in (0, 1)]
    path = plot_training({"bandit": [history, history], "none": fixed}, tmp_path / "duel.png", title="tiny")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert running_mean(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    with pytest.raises(ValueError, match="episodes"):
        train_defender(d, bandit, 0)
