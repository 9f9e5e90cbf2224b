"""The agents that choose or make the images (ActiveThief, Jacobian augmentation) and the
CopycatCNN preset, on our own small world and on the digits world."""
import numpy as np
import pytest
import torch
from test_image_choice import small_env
from test_interrupt import SigintAt

from agents import make_agent, run_attack
from agents.active.selection import entropy
from agents.registry import AGENTS, agent_options, env_preset


def transfer(env):
    indices, outputs = env.unwrapped.transfer_set.view()
    return indices.copy(), outputs.copy()


class Recording:
    """Wraps an image agent's ``next_round`` to keep the knockoff's weights and the pool it scored."""

    def __init__(self, agent):
        self.agent, self.rounds = agent, []
        inner = agent.next_round

        def next_round(left):
            core = agent.env.unwrapped
            state = {k: v.clone() for k, v in core.knockoff.model.state_dict().items()}
            pool, spent = core.query_set.unqueried().copy(), core.spent
            picked = inner(left)
            self.rounds.append((spent, state, pool, np.asarray(picked).copy()))
            return picked

        agent.next_round = next_round


@pytest.mark.parametrize("name", ["activethief-entropy", "activethief-margin", "activethief-k-center",
                                  "activethief-dfal", "activethief-dfal-k-center", "jacobian", "copycat"])
def test_every_strategy_is_registered_with_its_options(name):
    assert name in AGENTS
    env = small_env(budget=30, **env_preset(name))
    options = {"exclude": ["home"]} if name == "copycat" else {}
    agent = make_agent(name, env, seed=0, **options)
    assert set(options) <= set(agent_options(name))
    result = run_attack(env, agent, seed=0, progress=False)
    indices = transfer(env)[0]
    assert result["queries"] == env.victim.queries == 30 == len(set(indices.tolist()))


def test_activethief_seed_set_is_random_then_each_round_takes_the_most_uncertain_of_the_pool():
    env = small_env(budget=40)
    agent = make_agent("activethief-entropy", env, seed=3, seed_size=8, round_size=12)
    recorder = Recording(agent)
    run_attack(env, agent, seed=0, progress=False)
    spent = [r[0] for r in recorder.rounds]
    assert spent == [0, 8, 20, 32]  # the seed set, then rounds of 12 (the last cut at the budget)
    assert [len(r[3]) for r in recorder.rounds] == [8, 12, 12, 8]
    probe = small_env(budget=40).knockoff.model  # an independent copy to score with the recorded weights
    for _, state, pool, picked in recorder.rounds[1:]:
        probe.load_state_dict(state)
        with torch.no_grad():
            h = entropy(torch.softmax(probe(env.query_set.images[torch.from_numpy(pool)]), 1)).numpy()
        by_index = dict(zip(pool.tolist(), h))
        chosen = np.array([by_index[i] for i in picked.tolist()])
        rest = np.array([by_index[i] for i in sorted(set(pool.tolist()) - set(picked.tolist()))])
        assert chosen.min() >= rest.max() - 1e-6
    # the seed set does not depend on the knockoff (another one, same agent seed: the same images),
    # the scored rounds do
    other = small_env(budget=40, knockoff=lambda: torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(9, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)))
    other_agent = make_agent("activethief-entropy", other, seed=3, seed_size=8, round_size=12)
    run_attack(other, other_agent, seed=0, progress=False)
    assert transfer(other)[0][:8].tolist() == transfer(env)[0][:8].tolist()
    assert transfer(other)[0][8:].tolist() != transfer(env)[0][8:].tolist()
    third = small_env(budget=40)
    run_attack(third, make_agent("activethief-entropy", third, seed=4, seed_size=8, round_size=12), seed=4,
               progress=False)
    assert set(transfer(third)[0][:8].tolist()) != set(transfer(env)[0][:8].tolist())  # another run seed


def test_activethief_spends_the_exact_budget_without_repeats():
    env = small_env(budget=37)
    agent = make_agent("activethief-k-center", env, seed=0, seed_size=5, round_size=7, pool_sample=30)
    result = run_attack(env, agent, seed=0, progress=False)
    indices = transfer(env)[0]
    assert result["queries"] == env.victim.queries == len(indices) == len(set(indices.tolist())) == 37


def test_jacobian_rounds_double_the_transfer_set_with_signed_gradient_steps():
    env = small_env(budget=40)
    agent = make_agent("jacobian", env, seed=0, seed_size=4, lam=0.1, tau=3)
    recorder = Recording(agent)
    run_attack(env, agent, seed=0, progress=False)
    assert [r[0] for r in recorder.rounds] == [0, 4, 8, 16, 32] and agent.rounds == 4
    assert [len(r[3]) for r in recorder.rounds] == [4, 4, 8, 16, 8]  # the last cut at the budget
    qs = env.query_set
    indices, outputs = transfer(env)
    assert (indices[:4] < len(qs)).all() and (indices[4:] >= len(qs)).all()
    low, high = float(qs.fetch(indices[:4]).min()), float(qs.fetch(indices[:4]).max())
    for spent, _, _, made in recorder.rounds[1:]:
        parents = indices[:len(made)]  # each round: one new image per image queried so far, in order
        step = (qs.fetch(made) - qs.fetch(parents)).abs()
        free = (qs.fetch(made) > low + 1e-6) & (qs.fetch(made) < high - 1e-6)  # not clipped
        assert torch.allclose(step[free], torch.tensor(0.1), atol=1e-5)
        assert [qs.position_of(int(i)) for i in made] == [qs.position_of(int(p)) for p in parents]
    np.testing.assert_allclose(outputs, torch.softmax(env.victim.victim(qs.fetch(indices)), 1).detach().numpy(),
                               atol=1e-6)  # the synthetic images went to the victim as queried
    fit = env.fit(epochs=1)  # the offline phase trains on the synthetic images too
    assert fit.model is not None


@pytest.mark.filterwarnings("ignore::knockoff_env.NearChanceWarning")  # 28 queries: the interrupted run
@pytest.mark.parametrize("name, options", [("activethief-entropy", {"seed_size": 6, "round_size": 10}),
                                           ("activethief-dfal-k-center", {"seed_size": 6, "round_size": 10}),
                                           ("jacobian", {"seed_size": 3})])
def test_an_interrupted_image_agent_resumes_to_the_uninterrupted_run(tmp_path, name, options):
    reference = small_env(budget=40)
    run_attack(reference, make_agent(name, reference, seed=2, **options), seed=1, progress=False)
    env = small_env(budget=40)
    stopped = run_attack(env, SigintAt(make_agent(name, env, seed=2, **options), at=7), seed=1, progress=False,
                         logdir=tmp_path, checkpoint_every=4)
    # checkpointed at step 4; steps 5–7 journaled after it, and replayed: a round is made (scored or
    # synthesized) again at step 6 (ActiveThief) or step 5 (Jacobian)
    assert stopped["interrupted"] and stopped["steps"] == 7
    env = small_env(budget=40)
    resumed = run_attack(env, SigintAt(make_agent(name, env, seed=2, **options), at=0), seed=1, progress=False,
                         logdir=tmp_path,
                         resume=True, checkpoint_every=4)
    assert resumed["queries"] == 40 and not resumed["interrupted"]
    assert np.array_equal(transfer(env)[0], transfer(reference)[0])
    assert np.array_equal(transfer(env)[1], transfer(reference)[1])
    for a, b in zip(env.knockoff.model.parameters(), reference.knockoff.model.parameters()):
        assert torch.equal(a, b)
    if name == "jacobian":
        assert torch.equal(env.query_set.synthetic, reference.query_set.synthetic)


def test_copycat_queries_only_out_of_domain_images_and_gets_only_labels():
    env = small_env(budget=40, **env_preset("copycat"))
    agent = make_agent("copycat", env, seed=0, exclude=("home",))
    result = run_attack(env, agent, seed=0, progress=False, retrain_epochs=1)
    indices, outputs = transfer(env)
    labels = env.query_set.label_ids[env.query_set.positions[indices]]
    assert (labels >= 4).all() and result["queries"] == 40  # the "away" node only
    assert ((outputs == 0) | (outputs == 1)).all() and (outputs.sum(1) == 1).all()
    with pytest.raises(ValueError, match="labels only"):
        make_agent("copycat", small_env(), seed=0, exclude=("home",))
    with pytest.raises(ValueError, match="no coarse node"):
        make_agent("copycat", small_env(output="label"), seed=0, exclude="digits")
    declared = small_env(budget=40, output="label", victim_domain="home")  # the world names its domain
    run_attack(declared, make_agent("copycat", declared, seed=0), seed=0, progress=False, retrain_epochs=1)
    assert np.array_equal(transfer(declared)[0], indices)  # the same attack as exclude=("home",)
    with pytest.raises(ValueError, match="victim_domain=.*no coarse node"):
        small_env(victim_domain=("nowhere",))
    with pytest.raises(ValueError, match="fewer than the budget"):
        make_agent("copycat", small_env(budget=60, output="label"), seed=0, exclude="home")


def test_copycat_on_the_digits_world_uses_the_distractor_nodes(tmp_path):
    import gymnasium as gym

    import knockoff_env  # noqa: F401

    env = gym.make("Knockoff-Digits-v0", budget=120, device="cpu", **env_preset("copycat"))
    run_attack(env, make_agent("copycat", env, seed=0), seed=0, progress=False)
    core = env.unwrapped
    indices, outputs = transfer(env)
    nodes = {core.query_set.coarse_names[c] for c in core.query_set.coarse_of_label[core.query_set.positions[indices]]}
    assert nodes <= {"letters", "shapes", "textures"} and len(nodes) == 3
    assert ((outputs == 0) | (outputs == 1)).all()


def test_the_command_line_runs_the_new_strategies_and_applies_the_copycat_preset(tmp_path, capsys):
    import json

    from agents.cli import main
    for name, extra in [("copycat", []), ("activethief-margin", ["--agent-arg", "round_size=20"]),
                        ("jacobian", ["--agent-arg", "lam=0.2"])]:
        summary = tmp_path / f"{name}.json"
        assert main(["attack", "--agent", name, "--budget", "60", "--retrain-epochs", "1", "--quiet", "--device",
                     "cpu", "--logdir", str(tmp_path / name), "--json", str(summary), *extra]) == 0
        result = json.loads(summary.read_text())
        assert result["queries"] == 60 and result["agent"] in ("CopycatCNN", "ActiveThief", "JacobianAgent")
    outputs = np.load(tmp_path / "copycat" / "transfer_set.npz")["outputs"]
    assert ((outputs == 0) | (outputs == 1)).all()  # --agent copycat answered with labels
    assert main(["attack", "--agent", "copycat", "--output", "probs", "--budget", "60", "--quiet"]) == 2
    assert "needs output='label'" in capsys.readouterr().err
    from agents.cli import main as cli
    assert (tmp_path / "jacobian" / "synthetic_images.npz").exists()
    assert cli(["retrain", str(tmp_path / "jacobian"), "--epochs", "1"]) == 0  # the made images kept


def test_a_sweep_runs_the_new_strategies_with_their_presets(tmp_path):
    from agents.sweep.spec import load_spec
    from agents.sweep.trial import run_trial

    spec = load_spec({"env": "Knockoff-Digits-v0", "env_options": {"budget": 48, "device": "cpu"},
                      "agent_options": {"round_size": 16, "lam": 0.2},
                      "axes": {"agent": ["copycat", "activethief-entropy", "jacobian"]},
                      "run": {"retrain_epochs": 0, "checkpoint_every": 5}})
    trials = spec.trials()
    assert [(t.agent, t.agent_options) for t in trials] == [
        ("copycat", {"round_size": 16, "lam": 0.2}), ("activethief-entropy", {"round_size": 16, "lam": 0.2}),
        ("jacobian", {"round_size": 16, "lam": 0.2})]  # each agent takes the options it has
    for trial in trials:
        result = run_trial(trial, tmp_path / trial.agent)
        assert result["status"] == "ok" and result["queries"] == 48, result
    outputs = np.load(tmp_path / "copycat" / "transfer_set.npz")["outputs"]
    assert ((outputs == 0) | (outputs == 1)).all()  # the copycat preset's labels-only answers


@pytest.mark.parametrize("name", ["activethief-margin", "jacobian"])
def test_an_image_agent_without_an_online_knockoff_stops_before_any_query(name):
    env = small_env(train_online=False)
    with pytest.raises(ValueError, match="online knockoff"):
        run_attack(env, make_agent(name, env, seed=0), seed=0, progress=False)
    assert env.victim.queries == 0
