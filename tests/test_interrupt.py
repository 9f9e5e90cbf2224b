"""Issue 15, Ctrl-C: a real ``knockoff attack`` process stops at a step boundary on SIGINT, saves
what a finished run saves (summary marked interrupted), prints the exact resume command, exits
130 with no traceback, and resumes to exactly the budget with every query distinct; a second
Ctrl-C stops it at once, still losing nothing."""
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import make_agent, run_attack
from agents.interrupt import StepBoundaryInterrupt
from conftest import tiny_world
from fuzz_cases import make_env
from agents.cli import main
from knockoff_env.worlds.digits import load_digits_victim
from knockoff_env.durability.journal import Journal
from test_durability_kill import journal_steps

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 200
ATTACK = ["attack", "--budget", str(BUDGET), "--seed", "5", "--quiet", "--checkpoint-every", "7"]


@pytest.fixture(scope="module", autouse=True)
def digits_victim_cached():
    """Train the digits victim here, once, so the processes below start attacking at once."""
    load_digits_victim()


def start(*args) -> subprocess.Popen:
    # SIGINT keeps its default disposition: Popen does not touch it, and no preexec_fn is given
    return subprocess.Popen([sys.executable, "-m", "agents.cli", *args], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def journal_records(run: Path) -> int:
    return journal_steps(run / "journal.bin")


def interrupt_when_running(proc: subprocess.Popen, run: Path, presses: int) -> tuple[str, str]:
    """SIGINT ``proc`` (``presses`` times) once its journal holds a few steps."""
    deadline = time.monotonic() + 120
    while journal_records(run) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"the attack ended before it could be interrupted: {proc.communicate()}"
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.002)
    out, err = proc.communicate(timeout=120)
    return out, err


def resume_command(text: str, run: Path) -> list[str]:
    line = next(line for line in text.splitlines() if "knockoff attack --resume" in line)
    argv = shlex.split(line.split("resume with:", 1)[1])
    assert argv[:3] == ["knockoff", "attack", "--resume"] and Path(argv[3]) == run
    return argv[1:]


def resume_to_the_budget(argv: list[str], run: Path) -> dict:
    proc = start(*argv, "--quiet")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is False
    assert summary["queries"] == summary["victim_queries"] == BUDGET
    with np.load(run / "transfer_set.npz", allow_pickle=False) as data:
        indices = data["indices"]
    assert len(indices) == BUDGET and len(np.unique(indices)) == BUDGET
    return summary


def test_ctrl_c_stops_a_real_attack_cleanly_and_it_resumes_to_exactly_the_budget(tmp_path):
    run = tmp_path / "run"
    proc = start(*ATTACK, "--logdir", str(run))
    out, err = interrupt_when_running(proc, run, presses=1)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    summary = json.loads((run / "summary.json").read_text())  # wrapped up as a finished run
    assert summary["interrupted"] is True and 0 < summary["queries"] < BUDGET
    assert (run / "policy.png").exists() and (run / "transfer_set.npz").exists()
    assert f"interrupted after {summary['queries']} of {BUDGET} queries" in err
    resume_to_the_budget(resume_command(err, run), run)


def test_ctrl_c_in_a_run_without_a_journal_says_what_was_kept(tmp_path, capsys):
    run, stop = tmp_path / "plain", threading.Event()

    def press_once_the_loop_runs():  # Python runs the handler in the main thread, as for a Ctrl-C
        while not stop.is_set():
            if isinstance(getattr(signal.getsignal(signal.SIGINT), "__self__", None), StepBoundaryInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.001)

    presser = threading.Thread(target=press_once_the_loop_runs, daemon=True)
    presser.start()
    code = main(["attack", "--budget", str(BUDGET), "--quiet", "--logdir", str(run), "--eval-every", "8"])
    stop.set()
    presser.join()
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    assert "cannot be resumed — start attacks with --logdir DIR --checkpoint-every N" in err
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True


class SigintAt:
    """An agent that sends this process ``presses`` real SIGINTs when it acts for the ``at``-th time."""

    def __init__(self, agent, at: int, presses: int = 1):
        self.agent, self.at, self.presses, self.acted = agent, at, presses, 0

    def act(self, obs, info):
        self.acted += 1
        if self.acted == self.at:
            for _ in range(self.presses):
                signal.raise_signal(signal.SIGINT)
        return self.agent.act(obs, info)

    def __getattr__(self, name):
        return getattr(self.agent, name)


def test_run_attack_stops_after_the_step_in_flight_and_restores_the_handler():
    assert threading.current_thread() is threading.main_thread()
    env = make_env(budget=24)
    agent = SigintAt(make_agent("random", env, seed=0), at=3)
    result = run_attack(env, agent, seed=0, progress=False)
    assert result["interrupted"] is True and result["steps"] == 3 and result["queries"] == 12
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert run_attack(env, make_agent("random", env, seed=0), seed=0, progress=False)["interrupted"] is False


def tiny_agent(env, wrapped: bool):
    """The agent of the run being resumed: the same class, so the journal's configuration agrees."""
    agent = make_agent("random", env, seed=0)
    return SigintAt(agent, at=0) if wrapped else agent


def tiny_journal_steps(run: Path, wrapped: bool) -> int:
    """Whole records in the tiny world's journal (read back through the journal's own checks)."""
    from agents.durable import run_config
    env = make_env(budget=24)
    journal, records = Journal.open(run / "journal.bin", run_config(env, tiny_agent(env, wrapped), 0))
    journal.close()
    return len(records)


def finish_from_the_journal(run: Path, wrapped: bool) -> None:
    env = make_env(budget=24)
    result = run_attack(env, tiny_agent(env, wrapped), seed=0, logdir=run, checkpoint_every=2,
                        resume=True, progress=False)
    indices, _ = env.transfer_set.view()
    assert result["queries"] == result["victim_queries"] == 24 and len(np.unique(indices)) == 24


def test_a_second_ctrl_c_stops_at_once_and_the_run_resumes(tmp_path):
    env = make_env(budget=24)
    agent = SigintAt(make_agent("random", env, seed=0), at=3, presses=2)
    with pytest.raises(KeyboardInterrupt):
        run_attack(env, agent, seed=0, logdir=tmp_path, checkpoint_every=2, progress=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert tiny_journal_steps(tmp_path, wrapped=True) == 2  # stopped before its third step
    finish_from_the_journal(tmp_path, wrapped=True)


def test_a_second_ctrl_c_during_a_step_waits_for_its_record(tmp_path):
    (x, y), victim, _ = tiny_world()
    calls = []

    def victim_pressed_twice_on_its_third_call(images):
        calls.append(len(images))
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return torch.softmax(victim(images), 1)

    env = make_env(budget=24, victim=victim_pressed_twice_on_its_third_call, num_classes=3)
    with pytest.raises(KeyboardInterrupt):
        run_attack(env, make_agent("random", env, seed=0), seed=0, logdir=tmp_path, checkpoint_every=2,
                   progress=False)
    assert tiny_journal_steps(tmp_path, wrapped=False) == 3  # the paid third answer was journaled first
    finish_from_the_journal(tmp_path, wrapped=False)
