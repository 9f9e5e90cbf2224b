"""Checkpoints and journals: exact save/load, and damaged, tampered or foreign files refused clearly."""
import pickle

import numpy as np
import pytest
import torch

from agents import GradientBandit, run_attack
from agents.durable import CHECKPOINT, JOURNAL
from knockoff_env import TransferSet
from knockoff_env.durability.checkpoint import CheckpointError
from agents.cli import main
from knockoff_env.durability.journal import Journal, JournalError, record_dtype

CONFIG = {"budget": 20, "seed": 0}
ACTIONS = [np.array([0, 1]), np.array([2, 0]), np.array([1, 1]), np.array([0, 0])]


def play(env, actions):
    return [env.step(a)[1] for a in actions]


def test_env_save_load_continues_exactly(make_env, tmp_path):
    env = make_env(budget=28)
    env.reset(seed=3)
    play(env, ACTIONS[:3])
    env.save(tmp_path / "ck.pt")
    saved_obs, _ = env.observe()
    rewards = play(env, ACTIONS)
    other = make_env(budget=28)
    other.reset(seed=9)  # a different episode, overwritten by the checkpoint
    other.load(tmp_path / "ck.pt")
    np.testing.assert_allclose(other.observe()[0], saved_obs, atol=1e-6)
    assert play(other, ACTIONS) == rewards
    assert np.array_equal(other.transfer_set.view()[0], env.transfer_set.view()[0])
    assert torch.equal(other.knockoff.model.fc.weight, env.knockoff.model.fc.weight)
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_checkpoint_of_another_configuration_is_refused(make_env, tmp_path):
    env = make_env(budget=20)
    env.reset(seed=0)
    env.save(tmp_path / "ck.pt")
    with pytest.raises(CheckpointError, match="budget: saved 20, now 24"):
        make_env(budget=24).load(tmp_path / "ck.pt")


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_damaged_checkpoint_is_refused(make_env, tmp_path, damage):
    env = make_env()
    env.reset(seed=0)
    path = tmp_path / "ck.pt"
    env.save(path)
    data = bytearray(path.read_bytes())
    if damage == "flip":  # change one byte of the stored tensors, keeping the zip readable
        at = data.index(b"data/0") + 200
        data[at] ^= 0xFF
    path.write_bytes(bytes(data[:len(data) // 2] if damage == "truncate" else b"" if damage == "empty" else data))
    with pytest.raises(CheckpointError, match="damaged|digest|not a knockoff_env"):
        env.load(path)


class _Payload:
    ran = False

    def __reduce__(self):
        return (setattr, (_Payload, "ran", True))


def test_pickled_objects_are_never_unpickled(make_env, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(CheckpointError, match="damaged or not a knockoff_env checkpoint"):
        make_env().load(path)
    assert not _Payload.ran
    npz = tmp_path / "evil.npz"
    np.savez(npz, indices=np.array([_Payload()], dtype=object), outputs=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="not a transfer set"):
        TransferSet.load(npz)
    assert not _Payload.ran
    path.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError):
        make_env().load(path)
    assert not _Payload.ran


def _journal(tmp_path, steps=3):
    journal = Journal.create(tmp_path / "j.bin", CONFIG, 4, 3)
    for s in range(steps):
        journal.append(np.arange(4) + 4 * s, np.full((4, 3), s / 3, np.float32))
    journal.close()
    return tmp_path / "j.bin"


def test_journal_round_trip_and_torn_tail(tmp_path):
    path = _journal(tmp_path)
    full = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(full - 5)  # the last record was cut short by a kill
    journal, records = Journal.open(path, CONFIG)
    assert len(records) == 2 and records["indices"][1].tolist() == [4, 5, 6, 7]
    assert path.stat().st_size == full - records.dtype.itemsize  # truncated back to whole records
    journal.append(np.array([8, 9]), np.ones((2, 3), np.float32))  # appending carries on at seq 2
    journal.close()
    _, records = Journal.open(path, CONFIG)
    assert records["seq"].tolist() == [0, 1, 2] and records["n"].tolist() == [4, 4, 2]
    assert records["indices"][2].tolist() == [8, 9, -1, -1]


def test_journal_garbage_tail_is_dropped(tmp_path):
    path = _journal(tmp_path)
    with open(path, "ab") as f:  # a whole record of zeros (bad checksum) and a partial one
        f.write(b"\x00" * (record_dtype(4, 3).itemsize + 7))
    _, records = Journal.open(path, CONFIG)
    assert len(records) == 3


def test_journal_tampered_record_is_refused(tmp_path):
    path = _journal(tmp_path)
    data = bytearray(path.read_bytes())
    data[-2 * record_dtype(4, 3).itemsize + 20] ^= 1  # a byte of record 1 of 3
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="record 1 fails its checksum"):
        Journal.open(path, CONFIG)


def test_journal_header_and_config_are_checked(tmp_path):
    path = _journal(tmp_path)
    with pytest.raises(JournalError, match="seed: saved 0, now 1"):
        Journal.open(path, {**CONFIG, "seed": 1})
    with pytest.raises(JournalError, match="already exists"):
        Journal.create(path, CONFIG, 4, 3)
    path.write_bytes(b"PK" + path.read_bytes()[2:])
    with pytest.raises(JournalError, match="not a knockoff_env journal"):
        Journal.open(path, CONFIG)
    with pytest.raises(JournalError, match="no journal"):
        Journal.open(tmp_path / "missing.bin", CONFIG)


class _Crash(Exception):
    pass


def crashing_bandit(env, crash_after: int) -> GradientBandit:
    """A bandit whose process "dies" (raises) right after its ``crash_after``-th update."""
    agent = GradientBandit(env)
    update = agent.update

    def update_then_crash(action, reward, info):
        update(action, reward, info)
        if agent.steps == crash_after:
            raise _Crash

    agent.update = update_then_crash
    return agent


def test_runner_resume_in_process(make_env, tmp_path):
    reference = run_attack(env := make_env(budget=28), GradientBandit(env), seed=5, progress=False)
    ref_indices = env.transfer_set.view()[0].copy()
    env = make_env(budget=28)
    with pytest.raises(_Crash):
        run_attack(env, crashing_bandit(env, 4), seed=5, logdir=tmp_path, checkpoint_every=3, progress=False)
    env = make_env(budget=28)
    result = run_attack(env, GradientBandit(env), seed=5, logdir=tmp_path, resume=True, progress=False)
    assert np.array_equal(env.transfer_set.view()[0], ref_indices)
    assert result["queries"] == result["victim_queries"] == 28
    assert result["knockoff_accuracy"] == reference["knockoff_accuracy"]
    assert (tmp_path / JOURNAL).exists() and (tmp_path / CHECKPOINT).exists()

    env = make_env(budget=28)
    with pytest.raises(CheckpointError, match="seed: saved 5, now 6"):
        run_attack(env, GradientBandit(env), seed=6, logdir=tmp_path, resume=True, progress=False)
    with pytest.raises(JournalError, match="already exists"):
        run_attack(env, GradientBandit(env), seed=5, logdir=tmp_path, checkpoint_every=3, progress=False)


def test_cli_refuses_bad_durability_options(tmp_path, capsys):
    assert main(["attack", "--resume", str(tmp_path / "nothing"), "--quiet"]) == 2
    assert "--resume needs a run directory" in capsys.readouterr().err
    assert main(["attack", "--checkpoint-every", "5", "--quiet", "--budget", "40"]) == 2
    assert "--checkpoint-every needs --logdir" in capsys.readouterr().err
