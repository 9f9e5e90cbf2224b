"""Detectors and defences in the env: termination at the
alarm, flagging, durability, SB3, vector envs, MultiKnockoff and both env checkers."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import LinearNet
from gymnasium.utils.env_checker import check_env
from test_durability_files import _Crash, crashing_bandit

from agents import GradientBandit, run_attack
from knockoff_env import BlackBox, KnockoffEnv
from knockoff_env.core.multi import MultiKnockoff
from knockoff_env.victim.detectors import parse_detector


def one_hot(classes, k=3):
    return torch.nn.functional.one_hot(torch.as_tensor(classes), k).float()


def feed(detector, images, answers, batch=4):
    for i in range(0, len(images), batch):
        if detector.observe(images[i:i + batch], answers[i:i + batch]) is not None:
            return detector.alarm_at
    return None


def test_detector_specs():
    detector = parse_detector("prada:delta=0.9,min_distances=50,every=5,min_per_class=3")
    assert (detector.delta, detector.min_distances, detector.every, detector.min_per_class) == (0.9, 50, 5, 3)
    assert detector.spec() == "prada:delta=0.9,min_distances=50,every=5,min_per_class=3,pool=32"
    assert parse_detector(None) is None
    with pytest.raises(ValueError, match="unknown detector 'prado'"):
        parse_detector("prado")
    with pytest.raises(ValueError, match="bad parameter 'alpha=1'"):
        parse_detector("prada:alpha=1")
    with pytest.raises(ValueError, match="delta"):
        parse_detector("prada:delta=2")
    with pytest.raises(ValueError, match="every=0"):
        parse_detector("prada:every=0")


def seeds_world(n_per_seed=40, seeds=4, dim=6):
    """A query set of sign perturbations x + λ·sign(·) of a few seed points, as Jacobian
    augmentation makes them: PRADA's prey."""
    g = torch.Generator().manual_seed(11)
    base = torch.randn(seeds, dim, generator=g) * 3
    pick = torch.arange(seeds).repeat_interleave(n_per_seed)
    x = base[pick] + 0.05 * torch.randn(len(pick), dim, generator=g).sign()
    labels = torch.randint(0, 6, (len(pick),), generator=g)
    return x, labels


@pytest.fixture
def seeds_env():
    def make(**kwargs):
        x, labels = seeds_world()
        torch.manual_seed(5)
        options = dict(victim=LinearNet(), query_set=(x, labels), knockoff=lambda: LinearNet(),
                       hierarchy={"a": [0, 1, 2], "b": [3, 4, 5]}, eval_set=(x[:40], labels[:40] % 3),
                       budget=160, queries_per_step=7, device="cpu", detector="prada")
        options.update(kwargs)
        return KnockoffEnv(**options)
    return make


def play_to_end(env, seed=0):
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rewards, infos = [], []
    while True:
        mask = env.action_masks()
        coarse = rng.choice(np.flatnonzero(mask[:2]))
        obs, reward, terminated, truncated, info = env.step(np.array([coarse, rng.integers(3)]))
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            return rewards, infos


def test_detection_ends_the_episode_without_spending_past_it(seeds_env):
    env = seeds_env()
    _, infos = play_to_end(env)
    alarm = env.detected_at
    assert alarm is not None and alarm < env.budget and infos[-1]["detected"] and not infos[0]["detected"]
    assert alarm % 7 != 0  # the alarm fell inside a step, so the step's later images were refused
    assert env.spent == alarm == env.victim.queries == len(env.transfer_set) == infos[-1]["queries"]
    assert env.query_set.remaining().sum() == 160 - alarm  # unanswered images are back in their pools
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0, 0]))
    env.reset(seed=0)
    assert env.detected_at is None and not env.observe()[1]["detected"]


def test_flag_mode_goes_on_and_the_penalty_hits_the_alarm_step(seeds_env):
    flagged = seeds_env(on_detection="flag", detection_penalty=5.0)
    rewards, infos = play_to_end(flagged)
    plain = seeds_env(on_detection="flag")
    plain_rewards, _ = play_to_end(plain)
    at = next(i for i, info in enumerate(infos) if info["detected"])
    assert flagged.spent == 160 and all(info["detected"] for info in infos[at:])
    assert rewards[at] == pytest.approx(plain_rewards[at] - 5.0)
    assert rewards[:at] == plain_rewards[:at]
    with pytest.raises(ValueError, match="on_detection"):
        seeds_env(on_detection="stop")


def test_resumed_defended_monitored_attack_equals_uninterrupted(seeds_env, tmp_path):
    options = dict(defence="noise:sigma=0.05+rounded:decimals=3", queries_per_step=4)
    reference_env = seeds_env(**options)
    reference = run_attack(reference_env, GradientBandit(reference_env), seed=2, progress=False)
    assert reference["detected_at"] is not None and reference["detected_at"] > 40
    env = seeds_env(**options)
    with pytest.raises(_Crash):
        run_attack(env, crashing_bandit(env, 14), seed=2, logdir=tmp_path, checkpoint_every=5, progress=False)
    env = seeds_env(**options)
    resumed = run_attack(env, GradientBandit(env), seed=2, logdir=tmp_path, resume=True, progress=False)
    for key in ("detected_at", "queries", "victim_queries", "knockoff_accuracy", "defence_l1",
                "victim_accuracy_defended"):
        assert resumed[key] == reference[key], key
    indices, outputs = env.transfer_set.view()
    ref_indices, ref_outputs = reference_env.transfer_set.view()
    assert np.array_equal(indices, ref_indices) and np.array_equal(outputs, ref_outputs)
    # the journal holds what the attacker saw: defended answers, not the victim's
    x, _ = seeds_world()
    true = torch.softmax(env.victim.victim(x[indices]), 1).detach().numpy()
    assert np.abs(outputs - true).sum(1).mean() > 0.01
    defended = env.victim.defence(torch.from_numpy(true), x[indices])
    np.testing.assert_allclose(outputs, defended.numpy(), atol=1e-6)
    assert "noise" in (tmp_path / "journal.bin").read_bytes()[:2000].decode(errors="ignore")


def test_evaluate_reports_the_defence_cost(make_env):
    plain = make_env().evaluate()
    assert plain["victim_accuracy_defended"] == plain["victim_accuracy"] and plain["defence_l1"] == 0
    label = make_env(defence="label").evaluate()
    assert label["victim_accuracy_defended"] == plain["victim_accuracy"] and label["defence_l1"] > 0.1
    mad = make_env(defence="mad:eps=2.0").evaluate()
    assert mad["defence_l1"] > 0.5 and mad["victim_accuracy_defended"] != plain["victim_accuracy"]
    with pytest.raises(ValueError, match="give defence= to the BlackBox"):
        make_env(victim=BlackBox(LinearNet(), device="cpu"), defence="label")


SPECS = [("mad_argmax:eps=0.5", "prada"), ("adaptive_misinformation:tau=0.8+top_k:k=2", "prada:delta=0.9"),
         ("reverse_sigmoid:beta=0.7,gamma=0.2", None), ("noise:sigma=0.1", "prada")]


@pytest.mark.parametrize("defence,detector", SPECS)
def test_env_checkers_pass_with_defences_and_detectors(make_env, defence, detector):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env
    env = make_env(defence=defence, detector=detector)
    check_env(env, skip_render_check=True)
    sb3_check_env(make_env(defence=defence, detector=detector, action_mode="flat"), warn=True)


def test_sb3_vector_env_and_multiknockoff_play_against_defences(make_env, seeds_env):
    from stable_baselines3 import PPO
    env = make_env(defence="mad:eps=0.5+top_k:k=2", detector="prada:min_distances=5", action_mode="flat")
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu").learn(32)
    _, answers = env.unwrapped.transfer_set.view()  # the last episode PPO played, as the env answered it
    assert model.num_timesteps == 32 and len(answers) > 0
    assert ((answers > 0).sum(1) <= 2).all()  # every answer PPO learnt from went through top_k:k=2

    vec = gym.vector.SyncVectorEnv([lambda: seeds_env(defence="noise:sigma=0.1") for _ in range(2)])
    vec.reset(seed=[0, 1])
    detected = np.zeros(2, bool)
    for _ in range(40):
        _, _, terminated, _, info = vec.step(np.array([[0, 1], [1, 2]]))
        detected |= info["detected"] | terminated
    assert detected.all()
    vec.close()

    torch.manual_seed(5)  # the seeds world's victim
    box = BlackBox(LinearNet(), defence="mad_argmax:eps=0.5", detector="prada", device="cpu")
    multi = MultiKnockoff([seeds_env(victim=box, detector=None) for _ in range(2)])
    assert multi.envs[0].detector is not multi.envs[1].detector  # one monitor per client
    multi.reset([0, 1])
    ended, rng = [False, False], np.random.default_rng(0)
    while not all(ended):
        live = [i for i, e in enumerate(ended) if not e]
        actions = [np.array([rng.integers(2), rng.integers(3)]) for _ in live]
        _, _, terminated, _, infos = MultiKnockoff([multi.envs[i] for i in live]).step(actions)
        for i, t in zip(live, terminated):
            ended[i] = t
    assert [env.spent for env in multi.envs] == [env.detected_at for env in multi.envs]
    assert all(env.spent < env.budget for env in multi.envs)
    assert box.queries == sum(env.spent for env in multi.envs)


def test_cli_attack_with_defence_and_detector(capsys):
    from agents.cli import main
    assert main(["attack", "--agent", "random", "--budget", "40", "--offline-only", "--quiet",
                 "--defence", "reverse_sigmoid:beta=0.7,gamma=0.2+top_k:k=3", "--detector", "prada",
                 "--on-detection", "flag"]) == 0
    out = capsys.readouterr().out
    assert "under defence     victim accuracy" in out and "reverse_sigmoid:beta=0.7,gamma=0.2+top_k:k=3" in out
    assert "prada:delta=0.9," in out
    assert main(["attack", "--budget", "40", "--quiet", "--defence", "mad:epsilon=1"]) == 2
    assert "bad parameter 'epsilon=1'" in capsys.readouterr().err
