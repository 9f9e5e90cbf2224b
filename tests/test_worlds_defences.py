"""Every registered world takes a defence and a detector through gym.make (miniature data)."""
import gymnasium as gym
import numpy as np
import pytest

import knockoff_env

from miniature import cifar_without_checksums, data_root  # noqa: F401

PAPER_OPTIONS = dict(query_set="d2", arch="resnet18", knockoff_init="scratch", image_size=32, device="cpu")
OPTIONS = {i: ({} if "digits" in e else dict(PAPER_OPTIONS) if "paper" in e else dict(budget=12, device="cpu"))
           for i, e in knockoff_env.ENV_IDS.items()}


@pytest.mark.parametrize("env_id", sorted(OPTIONS))
def test_every_world_plays_against_a_defence_and_a_detector(env_id, data_root):
    options = OPTIONS[env_id] if "Digits" in env_id else {**OPTIONS[env_id], "data_root": data_root}
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
