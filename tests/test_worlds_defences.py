"""Every registered world takes a defence and a detector through gym.make (miniature data)."""
import gymnasium as gym
import numpy as np
import pytest
from miniature import cifar_without_checksums, data_root  # noqa: F401

import knockoff_env

PAPER_OPTIONS = dict(query_set="d2", arch="resnet18", knockoff_init="scratch", image_size=32, device="cpu")
# one world per factory: every id of a family is built by the same function with the same **kwargs
FAMILIES = {"knockoff_env.worlds.digits:": ("Knockoff-Digits-v0", {}),
            "knockoff_env.worlds.paper:": ("Knockoff-Caltech256-v0", PAPER_OPTIONS),
            "knockoff_env.worlds.small_scale:": ("Knockoff-CIFAR10-v0", dict(budget=12, device="cpu"))}


def test_every_registered_id_belongs_to_a_family_tested_here():
    assert all(entry.startswith(tuple(FAMILIES)) for entry in knockoff_env.ENV_IDS.values())


@pytest.mark.parametrize("env_id, options", list(FAMILIES.values()))
def test_every_world_plays_against_a_defence_and_a_detector(env_id, options, data_root):
    options = options if "Digits" in env_id else {**options, "data_root": data_root}
    env = gym.make(env_id, defence="mad_argmax:eps=0.5+top_k:k=2", detector="prada:min_distances=3",
                   on_detection="flag", **options)
    world = env.unwrapped
    assert world.victim.defence.spec() == "mad_argmax:eps=0.5,seed=0+top_k:k=2" and world.detector is not None
    env.reset(seed=0)
    for _ in range(3):
        _, reward, terminated, _, info = env.step(env.action_space.sample())
        assert np.isfinite(reward) and "detected" in info
        answers = world.transfer_set.view()[1]
        assert ((answers > 0).sum(1) <= 2).all()  # the chain's last defence, top-2, is what was kept
        if terminated:
            break
    report = world.evaluate()
    assert report["victim_accuracy_defended"] == report["victim_accuracy"]  # MAD-argmax and top-k keep top-1
    assert report["defence_l1"] > 0


@pytest.mark.parametrize("env_id, options", list(FAMILIES.values()))
def test_every_world_fits_adaptive_misinformation_on_its_eval_set(env_id, options, data_root):
    """The defence that trains on its owner's images gets them from the world's eval set."""
    options = options if "Digits" in env_id else {**options, "data_root": data_root}
    env = gym.make(env_id, defence="adaptive_misinformation:epochs=1", **options)
    defence = env.unwrapped.victim.defence.defences[0]
    assert defence.model is not None and not defence.needs_data
    env.reset(seed=0)
    _, reward, *_ = env.step(env.action_space.sample())
    assert np.isfinite(reward)
    answers = env.unwrapped.transfer_set.view()[1]
    np.testing.assert_allclose(answers.sum(1), 1, atol=1e-5)
