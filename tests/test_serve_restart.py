"""A served victim killed three times during an attack (SIGKILL), restarted on the same state and
the attack resumed each time: the server forgets no charge, alarm or stored answer, and
server-charged == journal == budget."""
import json
import os
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
from served import ROOT, start_server, wait_until
from test_durability_kill import journal_steps
from test_remote import _journal_config

from knockoff_env.durability.journal import Journal
from knockoff_env.serve import StateStore, issue_key
from knockoff_env.worlds.digits import load_digits_victim

BUDGET = 100  # 25 steps of 4 queries, one request each
PRADA = "prada:delta=0.999,min_distances=10,every=4,min_per_class=1"  # fires in the first steps, before the first kill
DIE = {"6": "die", "20": "die"}  # the server charges and keeps these requests' answers, then dies unsent


ATTACKS: list[subprocess.Popen] = []  # killed at the end of the test, whatever happened


def attack(key: str, *args: str) -> subprocess.Popen:
    ATTACKS.append(subprocess.Popen([sys.executable, "-m", "agents.cli", "attack", *args], cwd=ROOT,
                                    env={**os.environ, "KNOCKOFF_API_KEY": key}, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True))
    return ATTACKS[-1]


def ends_asking_to_resume(proc: subprocess.Popen, run) -> str:
    """The attack's output, once it stopped because its server stayed down, naming the resume command."""
    try:
        out, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("waited 300 s for the attack to stop after its server died") from None
    assert proc.returncode == 2, out
    assert f"resume with: knockoff attack --resume {run}" in out and "no answer from" in out, out
    return out


def own(url: str, key: str, path: str) -> dict:
    return httpx.get(f"{url}/{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()


@pytest.mark.slow
@pytest.mark.timeout(900)  # eight processes start one after the other (4 servers, 4 attacks): minutes when loaded
def test_three_server_kills_during_an_attack_lose_nothing(tmp_path):
    load_digits_victim()
    state, run = tmp_path / "state", tmp_path / "run"
    store = StateStore(state)
    key = issue_key(store, "mallory", eval=True)
    store.close()
    serve = ["--state", str(state), "--detector", PRADA, "--inject-faults", json.dumps({"mallory": DIE})]
    journal = run / "journal.bin"

    servers = []

    def started(*args):
        servers.append(start_server(*args))
        return servers[-1]

    try:
        first = started(*serve)  # kill 1: the server dies at request 6, its answer charged and kept, unsent
        ends_asking_to_resume(attack(key, "--budget", str(BUDGET), "--seed", "4", "--quiet", "--checkpoint-every",
                                     "3", "--victim-url", first.url, "--eval-via-endpoint", "--on-detection", "flag",
                                     "--remote-arg", "retries=1", "--remote-arg", "backoff=0.05",
                                     "--logdir", str(run)), run)
        assert first.proc.wait(timeout=30) == -signal.SIGKILL and journal_steps(journal) == 5

        second = started(*serve, "--port", str(first.port))  # the same port
        assert own(second.url, key, "usage") == {"mallory": {"charged": 24, "eval": 0, "requests": 6, "repeats": 0}}
        alarm = own(second.url, key, "alarm")["detected_at"]
        assert alarm is not None and alarm <= 24  # raised before the kill, still known after it
        resumed = attack(key, "--resume", str(run))
        wait_until(lambda: journal_steps(journal) >= 9 or resumed.poll() is not None, 300,
                   "the resumed attack to journal 9 steps")
        second.kill()  # kill 2: from outside, wherever the attack is
        ends_asking_to_resume(resumed, run)
        at_kill = journal_steps(journal)
        assert 9 <= at_kill < 18  # before request 20, the third kill's

        third = started(*serve)  # a new port, given to the resumed attack
        counted = own(third.url, key, "usage")["mallory"]
        assert counted["repeats"] == 1  # step 6 was re-sent under its id and answered from the stored answers
        assert 4 * at_kill <= counted["charged"] <= 4 * (at_kill + 1)  # + the step in flight, if it was charged
        assert own(third.url, key, "alarm")["detected_at"] == alarm
        ends_asking_to_resume(attack(key, "--resume", str(run), "--victim-url", third.url), run)
        assert third.proc.wait(timeout=30) == -signal.SIGKILL  # kill 3: its own, at request 20

        fourth = started(*serve, "--port", str(third.port))  # where the run now expects it
        final = attack(key, "--resume", str(run))
        out, _ = final.communicate(timeout=300)
        assert final.returncode == 0, out
        counted = own(fourth.url, key, "usage")["mallory"]
        reopened, records = Journal.open(journal, _journal_config(run))
        reopened.close()
        summary = json.loads((run / "summary.json").read_text())
        assert counted["charged"] == int(records["n"].sum()) == summary["queries"] == BUDGET
        assert counted["repeats"] >= 2 and counted["eval"] == 540  # the unsent answers were fetched again, free
        assert own(fourth.url, key, "alarm")["detected_at"] == alarm
        with np.load(run / "transfer_set.npz", allow_pickle=False) as data:
            assert len(np.unique(data["indices"])) == BUDGET
    finally:  # also when an assertion failed: no process outlives the test
        for proc in ATTACKS:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for server in servers:
            server.stop()
