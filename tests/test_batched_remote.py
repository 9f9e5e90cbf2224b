"""The random strategy against a served victim: one request per batch of up to the server's
max_batch, charged once, and a batch torn by a kill sent again as it was and answered free."""
import json
import os
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
from conftest import LinearNet, tiny_world
from served import ROOT, start_server
from test_durability_kill import journal_steps
from test_remote import ANONYMOUS, AlarmAt, digits_expected, serving

from agents import RandomAgent, run_attack
from knockoff_env import BlackBox, KnockoffEnv
from knockoff_env.durability.journal import TEAR_ENV, Journal
from knockoff_env.serve import VictimService
from knockoff_env.worlds.digits import load_digits_victim


@pytest.fixture(scope="module")
def server():
    """`knockoff serve` of the digits world in a subprocess, without keys (clients are their address)."""
    load_digits_victim()  # trained once into the session cache, which the server reads
    served = start_server("--max-batch", "64")
    yield served.url
    served.stop()


def cli(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agents.cli", "attack", *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def served_attack(max_batch: int, detector=None, budget: int = 30):
    (x, y), victim, hierarchy = tiny_world(per_label=8)
    service = VictimService(BlackBox(victim, device="cpu"), (6,), max_batch=max_batch, detector=detector)
    with serving(service) as url:
        env = KnockoffEnv(victim=url, query_set=(x, y), hierarchy=hierarchy, knockoff=lambda: LinearNet(),
                          budget=budget, device="cpu")
        result = run_attack(env, RandomAgent(env), seed=0, progress=False)
    return env, result, service.usage()[ANONYMOUS]


def test_one_request_per_batch_of_up_to_max_batch():
    env, result, counted = served_attack(max_batch=8)
    assert env.victim.batch_size == 8
    assert counted["charged"] == result["queries"] == 30 and counted["repeats"] == 0
    assert counted["requests"] == result["victim_calls"] == 4  # 8 + 8 + 8 + 6 images, two steps a request
    assert result["ledger"]["requests"] == 4


def test_the_servers_alarm_cuts_a_batch_at_its_query():
    env, result, counted = served_attack(max_batch=8, detector=AlarmAt(10))
    assert result["detected_at"] == 10 and result["queries"] == len(env.transfer_set) == 10
    assert counted["charged"] == 16  # the second request (queries 9–16) was answered whole
    assert env.query_set.remaining().sum() == len(env.query_set) - 10  # the rest went back to the pools


def test_a_batch_torn_by_a_kill_is_sent_again_and_answered_free(server, tmp_path):
    budget, run = 200, tmp_path / "run"
    attack = ["--agent", "random", "--budget", str(budget), "--seed", "2", "--quiet", "--checkpoint-every", "4",
              "--victim-url", server, "--eval-via-endpoint", "--logdir", str(run), "--retrain-epochs", "0"]
    steps_per_batch = 64 // 4  # the server's max_batch, in 4-image steps
    tear = steps_per_batch + 4  # inside the second batch's write, after the server charged it
    torn = cli(*attack, env={TEAR_ENV: str(tear)})
    torn.wait(timeout=300)
    assert torn.returncode == -signal.SIGKILL
    journal = run / "journal.bin"
    assert journal_steps(journal) == tear  # the first batch and four records of the second reached the disk
    out, _ = (done := cli("--resume", str(run))).communicate(timeout=300)
    assert done.returncode == 0, out.decode()

    opened, records = Journal.open(journal, Journal.saved_config(journal))
    opened.close()
    assert np.flatnonzero(opened.batch_ends).tolist() == [15, 31, 47, 49]  # 64 + 64 + 64 + 8 images
    summary = json.loads((run / "summary.json").read_text())
    counted = httpx.get(f"{server}/usage").json()[ANONYMOUS]
    assert counted["charged"] == int(records["n"].sum()) == summary["queries"] == budget
    assert counted["repeats"] == 1  # the torn batch: the same request again, answered from memory
    assert summary["victim_calls"] == 3  # after the resume: the torn batch again, then two more
    with np.load(run / "transfer_set.npz", allow_pickle=False) as data:
        assert len(np.unique(data["indices"])) == budget
        np.testing.assert_allclose(data["outputs"], digits_expected(data["indices"]), atol=1e-6)


def test_a_server_limit_below_a_step_still_answers_whole_steps():
    env, result, counted = served_attack(max_batch=3, budget=12)
    assert counted["charged"] == 12 and result["victim_calls"] == 3  # one step per call, two requests each
    assert counted["requests"] == 6
