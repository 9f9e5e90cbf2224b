"""The duel (issue 24): the PettingZoo env of the attack against a defender, its rules, and its players."""
import math

import numpy as np
import pytest
import torch
from conftest import LinearNet, tiny_world
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

from knockoff_env import KnockoffEnv
from knockoff_env.duel import ATTACKER, DEFENDER, FEATURES, DuelEnv, Menu, benign_cost, env, parallel_env
from knockoff_env.duel.clients import BenignTraffic, ClientStats
from knockoff_env.victim.defences import parse_defence

MENU = ("none", "mad_argmax:eps=0.5", "noise:sigma=0.3", "top_k:k=1", "refuse")


def attack(**kwargs):
    """A tiny KnockoffEnv whose labels hold 8 images each, so that every draw of 4 is whole."""
    (x, y), victim, hierarchy = tiny_world(per_label=8)
    options = dict(victim=victim, query_set=(x, y), hierarchy=hierarchy, knockoff=lambda: LinearNet(),
                   eval_set=(x, y % 3), budget=24, device="cpu")
    options.update(kwargs)
    return KnockoffEnv(**options)


def benign_set(n=24, seed=5):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 6
    return torch.randn(n, 6, generator=g) + y[:, None].float(), y % 3


def duel(menu=MENU, attack_options=None, **kwargs):
    kwargs.setdefault("detector", "prada:min_distances=5")
    return DuelEnv(attack(**(attack_options or {})), benign_set(), menu=menu, **kwargs)


def agreement(core) -> float:
    """The oracle: top-1 agreement of the online knockoff with the victim on the eval set."""
    x, _ = core.eval_set
    with torch.no_grad():
        return float((core.knockoff.model(x).argmax(1) == core.victim.victim(x).argmax(1)).float().mean())


def play(d, defence, seed=0, attacker_actions=None):
    """A whole episode, the defender's action given by ``defence(step)``; per-step records."""
    obs, infos = d.reset(seed=seed)
    d.action_space(ATTACKER).seed(seed)
    records, t = [], 0
    while d.agents:
        a = attacker_actions[t] if attacker_actions is not None else d.action_space(ATTACKER).sample()
        obs, rewards, terms, truncs, infos = d.step({ATTACKER: a, DEFENDER: defence(t)})
        records.append((obs, rewards, terms, infos))
        t += 1
    return records


# --- the PettingZoo API ------------------------------------------------------------------------
def test_parallel_api_on_the_embedded_world_and_its_aec_form():
    parallel_api_test(parallel_env(budget=48), num_cycles=40)
    api_test(env(budget=48), num_cycles=40)


def test_parallel_api_with_several_benign_clients_at_a_fractional_rate():
    d = duel(benign_clients=2, benign_rate=0.75)
    assert d.num_clients == 3 and d.action_space(DEFENDER).nvec.tolist() == [len(MENU)] * 3
    parallel_api_test(d, num_cycles=40)
    parallel_seed_test(lambda: duel(benign_clients=2, benign_rate=0.75), num_cycles=20)


def test_seeded_episodes_are_reproducible_and_seeds_matter():
    def defence(t):
        return np.array([t % len(MENU), (t + 2) % len(MENU)])

    first, second, other = (play(duel(), defence, seed=s) for s in (7, 7, 8))
    assert len(first) == len(second)
    for (o1, r1, _, i1), (o2, r2, _, i2) in zip(first, second):
        assert np.array_equal(o1[ATTACKER], o2[ATTACKER]) and np.array_equal(o1[DEFENDER], o2[DEFENDER])
        assert r1 == r2 and i1[DEFENDER] == i2[DEFENDER]
    assert any(not np.array_equal(a[0][DEFENDER], b[0][DEFENDER]) for a, b in zip(first, other))


# --- the rules --------------------------------------------------------------------------------------
def test_a_refused_batch_is_spent_used_up_and_returns_nothing():
    d = duel()
    d.reset(seed=0)
    core, slot = d.knockoff, d.attacker_slot
    choice = np.zeros(d.num_clients, np.int64)
    choice[slot] = d.menu.index("refuse")
    weights = [p.clone() for p in core.knockoff.model.parameters()]
    left, charged = core.query_set.remaining().sum(), core.victim.queries
    _, rewards, terms, _, infos = d.step({ATTACKER: np.array([0, 0]), DEFENDER: choice})
    assert infos[ATTACKER]["refused"] and rewards[ATTACKER] == 0.0 and not terms[ATTACKER]
    assert core.spent == 4 and infos[ATTACKER]["queries"] == 4 and core.victim.queries == charged + 4
    assert core.query_set.remaining().sum() == left - 4 and len(core.transfer_set) == 0
    assert all(torch.equal(a, b) for a, b in zip(weights, core.knockoff.model.parameters()))
    choice[slot] = d.menu.index("none")
    _, _, _, _, infos = d.step({ATTACKER: np.array([0, 0]), DEFENDER: choice})
    assert not infos[ATTACKER]["refused"] and len(core.transfer_set) == 4 and core.spent == 8


def test_refusing_everyone_ends_at_the_budget_with_the_largest_benign_cost():
    d = duel(lam=0.5)
    records = play(d, lambda t: np.full(d.num_clients, d.menu.index("refuse")))
    core = d.knockoff
    assert core.spent == core.budget == 24 and len(records) == 6 and len(core.transfer_set) == 0
    assert all(records[-1][2].values()) and d.agents == []
    x, labels = benign_set()
    right = float((core.victim.victim(x).argmax(1) == labels).float().mean())
    assert d.benign_cost["accuracy_lost"] == pytest.approx(right) and d.benign_cost["l1"] == pytest.approx(2.0)
    total = sum(r[1][DEFENDER] for r in records)
    assert total == pytest.approx(-0.5 * (right + 2.0), abs=1e-6)  # the knockoff never learnt: no gain
    with pytest.raises(RuntimeError, match="reset"):
        d.step({ATTACKER: np.array([0, 0]), DEFENDER: np.zeros(d.num_clients, np.int64)})


def test_the_defenders_return_is_minus_the_gain_minus_lambda_times_the_benign_cost():
    """Benign clients get noise, the attacker true answers: each benign image is sent once, so the
    benign cost is the defence's mean cost over the benign set, computed here on its own."""
    d = duel(lam=2.0, eval_every=2)
    start = {}

    def defence(t):
        choice = np.full(d.num_clients, d.menu.index("noise"))
        choice[d.attacker_slot] = d.menu.index("none")
        return choice

    d.reset(seed=3)
    start["agreement"] = agreement(d.knockoff)
    records = play(d, defence, seed=3)
    x, labels = benign_set()
    true = torch.softmax(d.knockoff.victim.victim(x), 1)
    noise = parse_defence("noise:sigma=0.3")
    noisy = noise(true, x)
    lost = float(((true.argmax(1) == labels).float() - (noisy.argmax(1) == labels).float()).mean())
    l1 = float((noisy - true).abs().sum(1).mean())
    assert d.benign_cost["queries"] == 24 and d.benign_cost["l1"] == pytest.approx(l1, rel=1e-5)
    assert d.benign_cost["accuracy_lost"] == pytest.approx(lost)
    gain = agreement(d.knockoff) - start["agreement"]
    assert sum(r[1][DEFENDER] for r in records) == pytest.approx(-gain - 2.0 * (lost + l1), abs=1e-5)
    measured = [t for t, r in enumerate(records) if r[3][DEFENDER]["measured"]]
    assert measured == [1, 3, 5]  # every eval_every = 2 steps, and the last


def test_without_benign_traffic_the_defender_is_paid_only_at_measurements():
    d = duel(benign_rate=0, benign_clients=0, eval_every=4)
    assert d.num_clients == 1
    d.reset(seed=1)
    before = agreement(d.knockoff)
    records = play(d, lambda t: np.array([0]), seed=1)
    rewards = [r[1][DEFENDER] for r in records]
    assert all(r == 0.0 for t, r in enumerate(rewards) if (t + 1) % 4 and t != len(rewards) - 1)
    assert sum(rewards) == pytest.approx(-(agreement(d.knockoff) - before), abs=1e-6)


def test_with_final_epochs_the_last_measurement_is_of_the_retrained_knockoff():
    d = duel(benign_rate=0, benign_clients=0, final_epochs=3)
    d.reset(seed=2)
    before = agreement(d.knockoff)
    records = play(d, lambda t: np.array([0]), seed=2)
    assert [r[3][DEFENDER]["retrained"] for r in records] == [False] * (len(records) - 1) + [True]
    online = agreement(d.knockoff)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        retrained = d.knockoff.fit(epochs=3, seed=0, warn=False).model
    x, _ = d.knockoff.eval_set
    with torch.no_grad():
        final = float((retrained(x).argmax(1) == d.knockoff.victim.victim(x).argmax(1)).float().mean())
    assert records[-1][3][DEFENDER]["agreement"] == pytest.approx(final) and final != pytest.approx(online)
    assert sum(r[1][DEFENDER] for r in records) == pytest.approx(-(final - before), abs=1e-6)
    refused = duel(benign_rate=0, benign_clients=0, final_epochs=3)
    last = play(refused, lambda t: np.array([refused.menu.index("refuse")]), seed=2)[-1]
    assert not last[3][DEFENDER]["retrained"] and last[1][DEFENDER] == 0.0  # nothing to retrain on
    with pytest.raises(ValueError, match="final_epochs"):
        duel(final_epochs=-1)


def test_the_defender_never_sees_the_attackers_knockoff():
    """The same episode with and without the online knockoff: the attacker's observations differ,
    the defender's do not."""
    actions = [np.array([t % 3, t % 2]) for t in range(6)]

    def defence(t):
        return np.array([t % 2, 1])

    learning = play(duel(), defence, seed=4, attacker_actions=actions)
    frozen = play(duel(attack_options={"train_online": False}), defence, seed=4, attacker_actions=actions)
    assert any(not np.array_equal(a[0][ATTACKER], b[0][ATTACKER]) for a, b in zip(learning, frozen))
    for a, b in zip(learning, frozen):
        assert np.array_equal(a[0][DEFENDER], b[0][DEFENDER])
    assert set(learning[-1][3][DEFENDER]) == {"agreement", "measured", "agreement_gain", "retrained",
                                              "benign_queries", "benign_accuracy_lost", "benign_l1"}


def test_the_attackers_slot_is_drawn_and_its_row_counts_its_queries():
    d = duel(benign_clients=2, benign_rate=1.0)
    slots = set()
    for seed in range(16):
        obs, _ = d.reset(seed=seed)
        slots.add(d.attacker_slot)
        obs, *_ = d.step({ATTACKER: np.array([0, 0]), DEFENDER: np.zeros(3, np.int64)})
        rows = d.client_features(obs[DEFENDER])
        assert rows[d.attacker_slot, FEATURES.index("volume")] == pytest.approx(4 / 24)
        assert all(rows[s, FEATURES.index("volume")] == pytest.approx(2 / 24) for s in range(3) if s != d.attacker_slot)
    assert slots == {0, 1, 2}


# --- the parts --------------------------------------------------------------------------------
def test_benign_clients_send_at_their_rate_each_in_its_own_order():
    x, y = benign_set(10)
    traffic = BenignTraffic((x, y), clients=2, per_step=1.5)
    traffic.reset(np.random.default_rng(0))
    assert [traffic.count(t) for t in range(4)] == [1, 2, 1, 2] and traffic.total(4) == 12
    sent = {0: [], 1: []}
    for t in range(7):  # 10 queries each: the whole set, once
        for k, images, labels in traffic.draw(t):
            sent[k] += [int(np.flatnonzero((x == row).all(1))[0]) for row in images]
            assert torch.equal(labels, y[torch.tensor(sent[k][-len(labels):])])
    assert sorted(sent[0][:10]) == sorted(sent[1][:10]) == list(range(10)) and sent[0][:10] != sent[1][:10]


def test_client_statistics_from_a_known_stream():
    stats = ClientStats(num_classes=4, window=2, horizon=10, detector=None, device=torch.device("cpu"))
    assert not stats.features().any()
    answers = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.9, 0.0, 0.0], [0.2, 0.0, 0.5, 0.3], [0.0, 0.0, 0.0, 1.0]])
    stats.observe(torch.zeros(4, 3), answers)
    f = dict(zip(FEATURES, stats.features()))
    assert f["volume"] == pytest.approx(0.4) and f["prada_statistic"] == 1 and f["prada_ready"] == 0
    assert f["confidence_all"] == pytest.approx(0.775) and f["confidence_recent"] == pytest.approx(0.75)
    assert f["entropy_all"] == pytest.approx(1.0) and f["entropy_recent"] == pytest.approx(0.5)
    stats.observe(torch.zeros(6, 3), answers[[3] * 6])
    assert stats.features()[0] == 1.0  # volume is capped
    assert dict(zip(FEATURES, stats.features()))["entropy_recent"] == 0.0


def test_a_clients_prada_statistic_is_read_once_it_can_be_tested():
    stats = ClientStats(num_classes=3, window=5, horizon=100, detector="prada:min_distances=5",
                        device=torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    answers = torch.eye(3)[torch.arange(45) % 3]
    stats.observe(torch.randn(4, 6, generator=g), answers[:4])
    assert stats.features()[FEATURES.index("prada_ready")] == 0
    stats.observe(torch.randn(41, 6, generator=g), answers[4:])
    f = dict(zip(FEATURES, stats.features()))
    assert f["prada_ready"] == 1 and f["prada_statistic"] == pytest.approx(stats.detector.statistic())


def test_the_menu_parses_binds_and_answers():
    (_, _), victim, _ = tiny_world()
    menu = Menu(MENU, victim, torch.device("cpu"))
    assert menu.index("mad_argmax") == 1 and menu.index("top_k:k=1") == 3 and menu.refuses(4)
    probs = torch.softmax(torch.randn(3, 3), 1)
    images = torch.randn(3, 6)
    assert menu.answer(0, probs, images) is probs and menu.answer(4, probs, images) is None
    assert torch.allclose(menu.answer(3, probs, images), torch.nn.functional.one_hot(probs.argmax(1), 3).float())
    for bad, match in ((["none", "none"], "twice"), (["nope:x=1"], "unknown defence"), ([], "non-empty"),
                       ("none", "non-empty")):
        with pytest.raises(ValueError, match=match):
            Menu(bad, victim, torch.device("cpu"))
    with pytest.raises(ValueError, match="no entry"):
        menu.index("reverse_sigmoid")


def test_benign_cost_of_answers_refusals_and_flips():
    true = torch.tensor([[0.8, 0.2], [0.3, 0.7]])
    labels = torch.tensor([0, 0])  # the victim is right once
    assert benign_cost(true, true, labels) == (0.0, 0.0)
    assert benign_cost(true, None, labels) == (1.0, 4.0)
    flipped = true.flip(1)
    lost, l1 = benign_cost(true, flipped, labels)
    assert lost == 0.0 and l1 == pytest.approx(1.2 + 0.8)  # one answer broken, one fixed
    assert benign_cost(true, flipped[[0, 0]], labels)[0] == 1.0


@pytest.mark.parametrize("change, message", [
    (dict(attack_options={"defence": "top_k:k=1"}), "already has a defence"),
    (dict(attack_options={"detector": "prada"}), "detector of its own"),
    (dict(attack_options={"eval_set": None}), "eval_set"),
    (dict(benign_rate=-1), "benign_rate"),
    (dict(benign_rate=1.0, benign_clients=0), "benign clients"),
    (dict(lam=float("nan")), "lam"),
    (dict(eval_every=0), "eval_every"),
    (dict(render_mode="human"), "rendering"),
])
def test_bad_duels_are_refused_with_what_to_do(change, message):
    with pytest.raises(ValueError, match=message):
        duel(**change)


def test_bad_steps_are_refused():
    d = duel()
    d.reset(seed=0)
    with pytest.raises(ValueError, match="every agent"):
        d.step({ATTACKER: np.array([0, 0])})
    for bad in (np.array([0]), np.array([0, len(MENU)]), np.array([0.0, 1.0])):
        with pytest.raises(ValueError, match="menu entries"):
            d.step({ATTACKER: np.array([0, 0]), DEFENDER: bad})
    with pytest.raises(ValueError, match="agents are"):
        d.observation_space("owner")
    with pytest.raises(ValueError, match="cannot answer benign_set"):
        DuelEnv(attack(), (torch.randn(4, 7), torch.zeros(4, dtype=torch.long)))
    assert math.isfinite(d.step({ATTACKER: np.array([0, 0]), DEFENDER: np.array([0, 0])})[1][DEFENDER])
