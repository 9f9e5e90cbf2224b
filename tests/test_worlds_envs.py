"""The registered worlds on miniature data: every id plays, every query set and option works,
missing pieces are clear errors, and a run directory retrains and evaluates from the CLI."""
import json
import re
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from miniature import cifar_without_checksums, data_root  # noqa: F401

import knockoff_env
from agents.cli import main
from knockoff_env.training.evaluation import evaluation_report, per_class_accuracy, seen_classes

PAPER_IDS = ["Knockoff-Caltech256-v0", "Knockoff-CUBS200-v0", "Knockoff-Indoor67-v0", "Knockoff-Diabetic5-v0"]
SMALL_IDS = {"Knockoff-MNIST-v0": ("emnist", "emnistletters", "fashionmnist", "kmnist", "mnist"),
             "Knockoff-CIFAR10-v0": ("cifar100", "tinyimagenet200"),
             "Knockoff-CIFAR100-v0": ("cifar10", "tinyimagenet200")}
DATA_WORLDS = [i for i, entry in knockoff_env.ENV_IDS.items()
               if entry.startswith(("knockoff_env.worlds.paper:", "knockoff_env.worlds.small_scale:"))]
PAPER_OPTIONS = dict(arch="resnet18", knockoff_init="scratch", image_size=32, device="cpu")


def test_every_data_world_id_is_covered_here():
    assert sorted(DATA_WORLDS) == sorted(PAPER_IDS + list(SMALL_IDS))


def play(env, steps=3, seed=0):
    obs, info = env.reset(seed=seed)
    assert env.observation_space.contains(obs)
    spent = 0
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(reward) and not truncated
        spent += info["queries_this_step"]
        assert 1 <= info["queries_this_step"] <= 4 and info["queries"] == spent <= env.unwrapped.budget
        if terminated:
            break
    return info


def ilsvrc_hierarchy(tmp_path):
    path = tmp_path / "ilsvrc.json"
    path.write_text(json.dumps({"first": [0, 1, 2], "second": [3, 4, 5]}))
    return str(path)


@pytest.mark.parametrize("env_id", PAPER_IDS)
@pytest.mark.parametrize("query_set", ["ilsvrc", "openimages", "d2"])
def test_paper_worlds_play_with_every_query_set(env_id, query_set, data_root, tmp_path):
    hierarchy = {"ilsvrc": ilsvrc_hierarchy(tmp_path), "openimages": None, "d2": "auto"}[query_set]
    env = gym.make(env_id, query_set=query_set, data_root=data_root, hierarchy=hierarchy, **PAPER_OPTIONS)
    world = env.unwrapped
    expected = {"ilsvrc": ["first", "second"], "openimages": ["all"],
                "d2": ["ilsvrc", "openimages", "caltech256", "cubs200", "indoor67", "diabetic5"]}[query_set]
    assert world.query_set.coarse_names == expected
    # D² holds the victim's own source (CopycatCNN leaves it out); ILSVRC and OpenImages are all outside it
    assert world.victim_domain == ((env_id.split("-")[1].lower(),) if query_set == "d2" else ())
    assert world.budget == len(world.query_set)  # the default 60k, capped at the miniature P_A
    info = play(env)
    assert info["label"] in world.query_set.label_ids
    assert world.num_classes == len(world.eval_set[0].classes)
    env.close()


@pytest.mark.parametrize("env_id, query_set", [(i, q) for i, qs in SMALL_IDS.items() for q in qs])
def test_small_scale_worlds_play_with_every_query_set(env_id, query_set, data_root):
    env = gym.make(env_id, query_set=query_set, data_root=data_root, budget=12, device="cpu")
    world = env.unwrapped
    victim_arch = "lenet" if env_id == "Knockoff-MNIST-v0" else "resnet18_cifar"
    assert type(world.knockoff.model).__name__ == ("LeNet" if victim_arch == "lenet" else "ResNet")
    info = play(env, steps=100)  # until the budget is spent
    assert info["queries"] == 12
    env.close()


@pytest.mark.parametrize("env_id, options", [
    ("Knockoff-Caltech256-v0", dict(query_set="d2", **PAPER_OPTIONS)),
    ("Knockoff-MNIST-v0", dict(budget=12, device="cpu"))])
def test_worlds_pass_gymnasiums_env_checker_without_warnings(data_root, env_id, options):
    from gymnasium.utils.env_checker import check_env
    env = gym.make(env_id, data_root=data_root, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)


def test_a_world_evaluates_its_knockoff_on_the_victims_test_split(data_root):
    env = gym.make("Knockoff-Indoor67-v0", query_set="d2", data_root=data_root, **PAPER_OPTIONS)
    play(env)
    report = env.unwrapped.evaluate()
    assert 0 <= report["knockoff_accuracy"] <= 1 and 0 <= report["agreement"] <= 1
    assert len(env.unwrapped.eval_set[1]) == 3  # Indoor67's official test images


def test_a_paper_world_runs_at_the_image_size_its_victim_was_trained_at(data_root):
    options = {k: v for k, v in PAPER_OPTIONS.items() if k != "image_size"}
    env = gym.make("Knockoff-CUBS200-v0", query_set="openimages", hierarchy=None, data_root=data_root, **options)
    assert env.unwrapped.eval_set[0][0][0].shape == (3, 32, 32)  # the miniature victims record 32 px
    assert env.unwrapped.query_set.fetch(np.array([0])).shape == (1, 3, 32, 32)


def test_ilsvrc_hierarchy_is_found_where_build_hierarchy_writes_it(data_root, tmp_path):
    root = linked_root(tmp_path, data_root, "ILSVRC2012", "256_ObjectCategories", "victims")
    options = dict(query_set="ilsvrc", data_root=root, **PAPER_OPTIONS)
    with pytest.raises(FileNotFoundError, match=f"knockoff build-hierarchy ilsvrc --data-root {root}"):
        gym.make("Knockoff-Caltech256-v0", **options)
    main(["build-hierarchy", "ilsvrc", "--data-root", str(root), "--clusters", "2", "--arch", "resnet18",
          "--pretrained", "none", "--image-size", "32", "--no-progress",
          "--out", str(root / "hierarchies" / "ilsvrc-30.json")])
    env = gym.make("Knockoff-Caltech256-v0", **options)
    assert env.unwrapped.query_set.num_coarse == 2
    play(env)


def linked_root(tmp_path, data_root, *names):
    """A fresh data root holding only ``names`` (links into the shared miniature copy)."""
    root = tmp_path / "root"
    root.mkdir()
    for name in names:
        (root / name).symlink_to(data_root / name)
    return root


def test_semi_open_world_shrinks_only_the_victims_part_of_d2(data_root):
    closed = gym.make("Knockoff-Caltech256-v0", query_set="d2", data_root=data_root, **PAPER_OPTIONS).unwrapped
    semi = gym.make("Knockoff-Caltech256-v0", query_set="d2", data_root=data_root, tau_d=0.5, tau_k=0.3,
                    **PAPER_OPTIONS).unwrapped
    caltech = lambda w: w.query_set.coarse_remaining(w.query_set.pool_sizes)[2]  # noqa: E731
    assert caltech(closed) == 6 and caltech(semi) == 1  # 1 of 3 labels, half of its 2 images
    assert len(closed.query_set) - len(semi.query_set) == 5
    play(gym.make("Knockoff-Caltech256-v0", query_set="d2", data_root=data_root, tau_k=0.3, **PAPER_OPTIONS))
    with pytest.raises(ValueError, match="use them with query_set='d2'"):
        gym.make("Knockoff-Caltech256-v0", query_set="ilsvrc", data_root=data_root, tau_d=0.5, **PAPER_OPTIONS)


def test_bad_world_options_are_clear_errors(data_root):
    with pytest.raises(ValueError, match=r"query_set='cifar10'; the paper's worlds take one of"):
        gym.make("Knockoff-CUBS200-v0", query_set="cifar10", data_root=data_root)
    with pytest.raises(ValueError, match=r"the mnist world takes one of \('emnist'"):
        gym.make("Knockoff-MNIST-v0", query_set="cifar100", data_root=data_root)
    with pytest.raises(ValueError, match="budget=1000 exceeds"):
        gym.make("Knockoff-CUBS200-v0", query_set="openimages", hierarchy=None, data_root=data_root,
                 budget=1000, **PAPER_OPTIONS)


def test_a_missing_victim_names_the_command_that_trains_it(data_root, tmp_path):
    root = linked_root(tmp_path, data_root, "CUB_200_2011", "openimages")
    with pytest.raises(FileNotFoundError) as err:
        gym.make("Knockoff-CUBS200-v0", query_set="openimages", data_root=root, hierarchy=None, **PAPER_OPTIONS)
    assert f"knockoff train-victim cubs200 --data-root {root} --out {root / 'victims' / 'cubs200'}" in str(err.value)
    with pytest.raises(FileNotFoundError, match="knockoff train-victim mnist"):
        gym.make("Knockoff-MNIST-v0", data_root=root)


def test_missing_knockoff_weights_say_how_to_supply_them(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    options = {**PAPER_OPTIONS, "knockoff_init": "imagenet"}
    with pytest.raises(FileNotFoundError, match=r"(?s)ImageNet weights for resnet18 not found at .*hub"):
        gym.make("Knockoff-Caltech256-v0", query_set="d2", data_root=data_root, **options)


def test_a_missing_dataset_through_gym_make_names_its_layout(data_root, tmp_path):
    root = linked_root(tmp_path, data_root, "256_ObjectCategories", "victims")
    with pytest.raises(FileNotFoundError, match=r"(?s)OpenImages not found.*Expected layout"):
        gym.make("Knockoff-Caltech256-v0", query_set="openimages", data_root=root, hierarchy=None, **PAPER_OPTIONS)


def test_importing_the_package_touches_no_dataset():
    code = ("import sys, gymnasium as gym, knockoff_env; gym.spec('Knockoff-Caltech256-v0'); "
            "gym.spec('Knockoff-MNIST-v0'); "
            "loaders = tuple('knockoff_env.data.' + m for m in ('caltech256', 'cubs200', 'd2', 'diabetic5', 'ilsvrc', "
            "'indoor67', 'openimages', 'small_scale', 'hf', 'common', 'victims')); "
            "assert not any(m.startswith(('knockoff_env.worlds.paper', *loaders)) for m in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"KNOCKOFF_DATA": "/nonexistent", "PATH": "/usr/bin:/bin"}, cwd=".")
    assert result.returncode == 0, result.stderr


@pytest.fixture
def run_dir(data_root, tmp_path):
    """A RUN_DIR as the runner writes it: config.json, transfer_set.npz, knockoff.pt."""
    kwargs = dict(query_set="openimages", data_root=str(data_root), hierarchy=None, budget=12, **PAPER_OPTIONS)
    env = gym.make("Knockoff-Caltech256-v0", **kwargs)
    play(env, steps=10)
    run = tmp_path / "run"
    env.unwrapped.transfer_set.save(run / "transfer_set.npz")
    torch.save(env.unwrapped.knockoff.model.state_dict(), run / "knockoff.pt")
    (run / "config.json").write_text(json.dumps(
        {"env_id": "Knockoff-Caltech256-v0", "env_kwargs": kwargs, "agent": "random", "seed": 0, "budget": 12}))
    return run, env.unwrapped.evaluate()


def test_retrain_then_evaluate_a_run_directory(run_dir, capsys):
    run, online = run_dir
    main(["retrain", str(run), "--epochs", "2"])
    retrained = json.loads((run / "evaluation_knockoff_retrained.json").read_text())
    assert "knockoff_retrained.pt: knockoff accuracy" in capsys.readouterr().out
    state = torch.load(run / "knockoff_retrained.pt", weights_only=True)
    assert "fc.weight" in state and state["fc.weight"].shape == (3, 512)
    outputs = np.load(run / "transfer_set.npz")["outputs"]
    assert retrained["seen_classes"] == len(np.unique(outputs.argmax(1)))
    assert retrained["seen_classes"] + retrained["unseen_classes"] == 3
    assert len(retrained["per_class_accuracy"]) == 3

    assert main(["evaluate", str(run)]) == 0  # defaults to the retrained knockoff
    again = json.loads((run / "evaluation_knockoff_retrained.json").read_text())
    assert again["knockoff_accuracy"] == retrained["knockoff_accuracy"]
    main(["evaluate", str(run), "--model", str(run / "knockoff.pt")])
    first = json.loads((run / "evaluation_knockoff.json").read_text())
    for key in ("knockoff_accuracy", "victim_accuracy", "agreement"):  # agrees with the env's own evaluate
        assert first[key] == pytest.approx(online[key])


def test_run_directory_errors_are_clear(run_dir, tmp_path, capsys):
    run, _ = run_dir
    assert main(["evaluate", str(tmp_path)]) == 2
    assert re.search("config.json not found", capsys.readouterr().err)
    assert main(["evaluate", str(run), "--model", str(tmp_path / "absent.pt")]) == 2
    assert re.search("knockoff retrain", capsys.readouterr().err)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    assert main(["evaluate", str(run), "--model", str(tmp_path / "other.pt")]) == 2
    assert re.search("not a state dict of this run's knockoff", capsys.readouterr().err)
    np.savez(run / "transfer_set.npz", indices=np.arange(3), outputs=np.full((3, 7), 1 / 7, np.float32))
    assert main(["retrain", str(run), "--epochs", "1"]) == 2
    assert re.search("does not fit Knockoff-Caltech256-v0", capsys.readouterr().err)


def test_seen_classes_are_the_top1_answers_of_the_transfer_set():
    outputs = np.array([[0.7, 0.2, 0.1, 0.0], [0.1, 0.1, 0.8, 0.0], [0.6, 0.3, 0.1, 0.0]])
    assert seen_classes(outputs).tolist() == [True, False, True, False]
    assert seen_classes(np.zeros((0, 3))).tolist() == [False] * 3
    labels = np.array([0, 0, 1, 2, 2, 2])
    knockoff = np.array([0, 1, 1, 2, 0, 0])
    assert per_class_accuracy(knockoff, labels, 4)[:3].tolist() == [0.5, 1.0, pytest.approx(1 / 3)]
    report = evaluation_report(knockoff, labels.copy(), labels, outputs)
    assert report["seen_class_accuracy"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert report["unseen_class_accuracy"] == 1.0  # class 3 has no test image: left out of the mean
    assert report["knockoff_accuracy"] == pytest.approx(0.5) and report["times_victim"] == pytest.approx(0.5)
    assert report["seen_classes"] == 2 and report["unseen_classes"] == 2
