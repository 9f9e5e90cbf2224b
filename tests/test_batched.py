"""Batched steps (agents.batching, KnockoffEnv.step_batch): the random strategy's steps queried in
batches of one victim call each give the same attack as 4-image steps, to the exact budget, with
the journal, resume, detectors and a served victim's request limit."""
import signal

import numpy as np
import pytest
import torch
from conftest import LinearNet
from test_detectors import seeds_world
from test_interrupt import SigintAt
from test_prada import synthetic_stream

from agents import GradientBandit, RandomAgent, run_attack
from knockoff_env import BlackBox, KnockoffEnv
from knockoff_env.durability.journal import Journal
from knockoff_env.victim.detectors import PRADA


class CountingVictim:
    """The tiny world's victim as a callable that records the size of every call."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, images):
        self.calls.append(len(images))
        return torch.softmax(self.model(images), 1)


def uneven_env(budget=None, batch_size=256, sizes=(9, 13, 11, 10, 12, 9), **kwargs):
    """Pools of 9–13 images (not multiples of 4), so steps come out short when a pool runs dry; the
    victim a callable of known width, so that every call it records is an attack query."""
    g = torch.Generator().manual_seed(3)
    y = torch.tensor([z for z, n in enumerate(sizes) for _ in range(n)])
    x = torch.randn(len(y), 6, generator=g) + y[:, None].float()
    torch.manual_seed(7)
    victim = CountingVictim(LinearNet())
    box = BlackBox(victim, num_classes=3, device="cpu", batch_size=batch_size)
    return KnockoffEnv(victim=box, query_set=(x, y), hierarchy={"a": [0, 1, 2], "b": [3, 4], "c": [5]},
                       knockoff=lambda: LinearNet(), budget=budget, device="cpu", **kwargs), victim


def transfer(env):
    indices, outputs = env.transfer_set.view()
    return indices.copy(), outputs.copy()


@pytest.mark.parametrize("budget", [37, 64])  # a short last step; every pool emptied (64 images)
def test_batched_random_draws_the_4_image_steps_transfer_set_to_the_exact_budget(budget):
    runs = {}
    for batch in (False, None, 10):
        env, victim = uneven_env(budget=budget, batch_size=16)
        result = run_attack(env, RandomAgent(env), seed=4, progress=False, batch=batch)
        runs[batch] = transfer(env), result, victim.calls
        assert result["queries"] == result["victim_queries"] == len(env.transfer_set) == budget
        assert len(np.unique(env.transfer_set.view()[0])) == budget
    (indices, outputs), stepped, calls = runs[False]
    assert len(calls) == stepped["steps"] == stepped["victim_calls"] and max(calls) == 4 and min(calls) < 4
    for batch, limit in ((None, 16), (10, 10)):  # the victim's batch_size, or the runner's option
        (b_indices, b_outputs), result, b_calls = runs[batch]
        assert np.array_equal(b_indices, indices)
        np.testing.assert_allclose(b_outputs, outputs, atol=1e-6)
        assert result["steps"] == stepped["steps"] and max(b_calls) <= limit and max(b_calls) > 4
        assert result["victim_calls"] == len(b_calls) < len(calls)


def test_step_batch_keeps_the_step_semantics():
    env, _ = uneven_env(budget=40, train_online=True)
    stepped, _ = uneven_env(budget=40, train_online=True)
    agents = RandomAgent(env, seed=1), RandomAgent(stepped, seed=1)
    env.reset(seed=2)
    obs, info = stepped.reset(seed=2)
    rewards, infos = [], []
    done = False
    while not done:
        obs, reward, done, _, info = stepped.step(agents[1].act(obs, info))
        rewards.append(reward)
        infos.append(info)
    b_obs, b_rewards, b_done, _, b_infos = env.step_batch(lambda: agents[0].act(None, None), max_images=24)
    assert not b_done and len(b_infos) > 1 and b_infos[-1]["queries"] <= 24
    while not b_done:
        b_obs, more, b_done, _, more_infos = env.step_batch(lambda: agents[0].act(None, None), max_images=24)
        b_rewards, b_infos = [*b_rewards, *more], [*b_infos, *more_infos]
    np.testing.assert_allclose(b_rewards, rewards, atol=1e-5)  # the rewards of the steps, in one go
    for b, s in zip(b_infos, infos):
        assert b["queries"] == s["queries"] and b["label"] == s["label"]
        assert b["rewards"] == pytest.approx(s["rewards"], abs=1e-5, nan_ok=True)
    np.testing.assert_allclose(b_obs, obs, atol=1e-5)
    assert set(b_infos[-1]) == set(infos[-1])  # the last info is the full one
    with pytest.raises(RuntimeError, match="reset"):
        env.step_batch(lambda: agents[0].act(None, None))


def test_random_trains_no_online_knockoff_unless_asked(make_env, tmp_path):
    env = make_env()
    result = run_attack(env, RandomAgent(env), seed=0, progress=False, retrain_epochs=1)
    assert not env.train_online and result["knockoff_accuracy_online"] is None
    assert result["victim_accuracy"] is not None and result["knockoff_accuracy"] is not None
    run_attack(env, RandomAgent(env), seed=0, progress=False, eval_every=8)  # a curve of the online knockoff
    assert env.train_online
    env = make_env(train_online=True)  # the user's choice is kept
    run_attack(env, RandomAgent(env), seed=0, progress=False)
    assert env.train_online
    env = make_env()
    run_attack(env, RandomAgent(env), seed=0, progress=False, train_online=True)
    assert env.train_online
    with pytest.raises(ValueError, match="cannot be honoured"):
        run_attack(make_env(train_online=False), RandomAgent(env), seed=0, progress=False, train_online=True)
    env = make_env()
    run_attack(env, GradientBandit(env), seed=0, progress=False)
    assert env.train_online  # the adaptive agent's loss reward needs it
    with pytest.raises(ValueError, match="chooses its actions from the victim's answers"):
        run_attack(env, GradientBandit(env), seed=0, progress=False, batch=8)


def test_a_knockoff_nothing_trained_is_not_reported_as_measured(make_env):
    """Random without retraining: no knockoff learned anything, so an untrained network's accuracy
    (chance-level numbers that look like a result) is not reported; the victim's figures are."""
    from agents.summary import format_summary
    env = make_env()
    result = run_attack(env, RandomAgent(env), seed=0, progress=False, retrain_epochs=0)
    assert result["knockoff_accuracy"] is None and result["agreement"] is None and result["accuracy_curve"] == []
    assert result["victim_accuracy"] is not None
    assert "no knockoff was trained" in result["not_measured"]["knockoff_accuracy"]
    assert "not measured      knockoff accuracy" in format_summary(result)
    env = make_env()
    result = run_attack(env, RandomAgent(env), seed=0, progress=False, retrain_epochs=0, train_online=True)
    assert result["knockoff_accuracy"] is not None and "knockoff_accuracy" not in result["not_measured"]


def test_a_run_started_with_an_online_knockoff_resumes_with_it(make_env, tmp_path):
    env = make_env(budget=24)
    agent = SigintAt(RandomAgent(env), at=2)
    stopped = run_attack(env, agent, seed=0, logdir=tmp_path, checkpoint_every=2, train_online=True,
                         progress=False, batch=False)
    assert stopped["interrupted"] and env.train_online
    env = make_env(budget=24)  # resumed without saying: the journal's choice, not the random default
    resumed = run_attack(env, SigintAt(RandomAgent(env), at=0), seed=0, logdir=tmp_path, resume=True, progress=False)
    assert env.train_online and resumed["queries"] == 24


def test_a_first_ctrl_c_ends_the_batch_at_the_step_in_flight():
    env, victim = uneven_env(budget=40)
    result = run_attack(env, SigintAt(RandomAgent(env), at=3), seed=0, progress=False)
    assert result["interrupted"] and result["steps"] == 3 and result["queries"] == 12
    assert victim.calls == [12]  # the three steps in one call


def journal(run):
    """The run's whole records and which end a batch, read through the journal's own checks."""
    opened, records = Journal.open(run / "journal.bin", Journal.saved_config(run / "journal.bin"))
    opened.close()
    return records, opened.batch_ends


def test_a_durable_batched_run_journals_one_batch_per_call_and_resumes_from_a_torn_one(tmp_path):
    even = (8,) * 6  # every step 4 images
    reference, _ = uneven_env(budget=40, sizes=even)
    run_attack(reference, RandomAgent(reference), seed=0, progress=False, batch=12)
    env, _ = uneven_env(budget=40, sizes=even)
    run_attack(env, RandomAgent(env), seed=0, progress=False, batch=12, logdir=tmp_path, checkpoint_every=6)
    records, ends = journal(tmp_path)
    assert records["n"].tolist() == [4] * 10 and np.flatnonzero(ends).tolist() == [2, 5, 8, 9]  # 3+3+3+1 steps
    # killed halfway through the third batch's write (its first record whole, the second torn), after
    # the checkpoint of step 6 and before the next
    size = records.dtype.itemsize
    path = tmp_path / "journal.bin"
    data = path.read_bytes()
    header = len(data) - 10 * size
    path.write_bytes(data[:header + 7 * size + size // 2])
    records, ends = journal(tmp_path)
    assert len(records) == 6 and path.stat().st_size == header + 6 * size  # the whole third batch dropped
    env, victim = uneven_env(budget=40, sizes=even)
    result = run_attack(env, RandomAgent(env), seed=0, progress=False, batch=12, logdir=tmp_path, resume=True)
    assert victim.calls == [12, 4]  # the dropped batch sent again as it was, then the last step
    assert result["queries"] == result["victim_queries"] == 40
    assert np.array_equal(transfer(env)[0], transfer(reference)[0])
    np.testing.assert_allclose(transfer(env)[1], transfer(reference)[1], atol=1e-6)


def test_a_version_2_journal_is_still_read(tmp_path):
    """Journals written before batches (version 2: no batch bit) resume as one-step batches."""
    env, _ = uneven_env(budget=40)
    run_attack(env, RandomAgent(env), seed=0, progress=False, batch=False, logdir=tmp_path, checkpoint_every=100)
    path = tmp_path / "journal.bin"
    data = bytearray(path.read_bytes())
    import struct
    import zlib

    from knockoff_env.durability import journal as journal_format
    data[8:12] = struct.pack("<I", 2)  # what the previous release wrote: the same bytes, version 2
    end = journal_format.header_size(bytes(data)) - 4
    data[end:end + 4] = struct.pack("<I", zlib.crc32(bytes(data[:end])))
    size = np.dtype(journal_format.record_dtype(4, 3)).itemsize
    path.write_bytes(bytes(data[:end + 4 + 6 * size]))  # interrupted after six steps
    records, ends = journal(tmp_path)
    assert len(records) == 6 and ends.all()
    resumed_env, _ = uneven_env(budget=40)
    result = run_attack(resumed_env, RandomAgent(resumed_env), seed=0, progress=False, resume=True, logdir=tmp_path)
    assert result["queries"] == 40 and np.array_equal(transfer(resumed_env)[0], transfer(env)[0])


def test_prada_raises_its_alarm_at_the_same_query_batched_or_not():
    x, y = synthetic_stream(n=300, seed=5)
    alarms = []
    for batch in (1, 4, 64, 300):
        detector = PRADA()
        for i in range(0, len(x), batch):
            if detector.observe(x[i:i + batch], y[i:i + batch]) is not None:
                break
        alarms.append((detector.alarm_at, detector.seen, list(detector.distances)))
    assert alarms[0][0] is not None and all(a == alarms[0] for a in alarms)


def monitored_run(on_detection: str, batch: int | None):
    """An attack on PRADA's prey (perturbations of a few seeds), step by step or in batches of ``batch``."""
    x, labels = seeds_world()
    torch.manual_seed(5)
    env = KnockoffEnv(victim=LinearNet(), query_set=(x, labels), knockoff=lambda: LinearNet(),
                      hierarchy={"a": [0, 1, 2], "b": [3, 4, 5]}, budget=160, queries_per_step=7, device="cpu",
                      detector="prada", on_detection=on_detection, detection_penalty=5.0)
    agent = RandomAgent(env, seed=1)
    obs, info = env.reset(seed=0)
    rewards, done = [], False
    while not done:
        if batch is None:
            obs, reward, done, _, info = env.step(agent.act(obs, info))
            rewards.append(reward)
        else:
            obs, more, done, _, infos = env.step_batch(lambda: agent.act(None, None), max_images=batch)
            rewards += list(more)
    return env, rewards


@pytest.mark.parametrize("on_detection", ["terminate", "flag"])
def test_an_attack_monitored_by_prada_is_stopped_at_the_same_query_batched_or_not(on_detection):
    stepped, rewards = monitored_run(on_detection, None)
    batched, b_rewards = monitored_run(on_detection, 64)
    alarm = stepped.detected_at
    assert alarm is not None and batched.detected_at == alarm
    assert np.array_equal(transfer(batched)[0], transfer(stepped)[0])
    np.testing.assert_allclose(transfer(batched)[1], transfer(stepped)[1], atol=1e-6)
    spent = alarm if on_detection == "terminate" else 160
    assert batched.spent == batched.victim.queries == stepped.victim.queries == spent
    assert batched.query_set.remaining().sum() == stepped.query_set.remaining().sum() == 160 - spent
    np.testing.assert_allclose(b_rewards, rewards, atol=1e-5)  # the penalty on the alarm's step in both
    assert min(rewards) < -4


class PressingVictim(CountingVictim):
    """Sends this process two SIGINTs during its first call (a second Ctrl-C mid-batch)."""

    def __call__(self, images):
        if not self.calls:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return super().__call__(images)


def test_a_second_ctrl_c_waits_for_the_batch_in_flight_to_be_journaled(tmp_path):
    env, victim = uneven_env(budget=40, sizes=(8,) * 6)
    env.victim.victim = PressingVictim(victim.model)
    with pytest.raises(KeyboardInterrupt):
        run_attack(env, RandomAgent(env), seed=0, logdir=tmp_path, checkpoint_every=2, progress=False, batch=12)
    records, ends = journal(tmp_path)
    assert len(records) == 3 and ends.tolist() == [False, False, True]  # the paid batch, whole
    env, victim = uneven_env(budget=40, sizes=(8,) * 6)
    result = run_attack(env, RandomAgent(env), seed=0, logdir=tmp_path, resume=True, progress=False, batch=12)
    assert result["queries"] == 40 and sum(victim.calls) == 40 - 12  # the journaled batch is not asked again


def test_a_second_ctrl_c_while_drawing_a_batch_gives_its_images_back(tmp_path):
    env, victim = uneven_env(budget=40)
    with pytest.raises(KeyboardInterrupt):
        run_attack(env, SigintAt(RandomAgent(env), at=3, presses=2), seed=0, logdir=tmp_path, checkpoint_every=2,
                   progress=False)
    assert victim.calls == [] and env.pending == 0 and env.query_set.remaining().sum() == len(env.query_set)
    assert len(journal(tmp_path)[0]) == 0


def test_an_online_curve_is_evaluated_at_the_same_queries_batched_or_not(make_env):
    curves = {}
    for batch in (False, None):
        env = make_env(budget=30)
        result = run_attack(env, RandomAgent(env), seed=0, progress=False, eval_every=8, batch=batch)
        curves[batch] = result["accuracy_curve"], result["agreement_curve"], result["victim_calls"]
        assert env.train_online  # the curve asked for the online knockoff
    points = [q for q, _ in curves[False][0]]
    assert [q for q, _ in curves[None][0]] == points and len(points) == 4  # the first steps past 8, 16, 24; the end
    assert all(8 * i <= q < 8 * i + 4 for i, q in enumerate(points[:3], 1)) and points[-1] == 30
    np.testing.assert_allclose([a for _, a in curves[None][0]], [a for _, a in curves[False][0]], atol=0.05)
    assert [c[0] for c in curves[None][1]] == [c[0] for c in curves[False][1]]
    assert curves[None][2] < curves[False][2]  # batches end at each evaluation: 4 calls, not 8 steps
