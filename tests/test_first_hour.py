"""Issue 22, a new user's first hour: `knockoff attack` with no other option runs the paper's whole
attack (online, then offline) and journals it; a remote attack needs no evaluation flag and says what
it did not measure; any run resumes after a SIGKILL; every option's help shows its default; the
near-chance advice names what differs from runs that work."""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from test_durability_kill import finish, kill_at

from agents.cli import build_parser, main
from knockoff_env.training.advice import QUERIES_PER_CLASS, offline_advice, online_advice
from knockoff_env.training.recipes import RECIPES
from knockoff_env.worlds.digits import load_digits_victim

ROOT = Path(__file__).resolve().parents[1]
RUN_LINE = re.compile(r"^run directory (\S+) \(journaled")


def run_dir_from(out: str) -> Path:
    """The run directory the attack printed at its start."""
    found = [RUN_LINE.match(line) for line in out.splitlines()]
    found = [m for m in found if m]
    assert found, f"no 'run directory' line in:\n{out}"
    return Path(found[0].group(1))


def test_attack_with_only_env_and_budget_runs_the_whole_attack_and_journals_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KNOCKOFF_RUNS", str(tmp_path))
    assert main(["attack", "--env", "Knockoff-Digits-v0", "--budget", "400"]) == 0
    out = capsys.readouterr().out
    run = run_dir_from(out)
    assert run.parent == tmp_path and run.name.startswith("Knockoff-Digits-v0-adaptive-0-")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["retrained"] and summary["recipe"] == "scratch" and summary["retrain_epochs"] == 30
    assert not summary["near_chance"] and "NEAR CHANCE" not in out
    assert summary["knockoff_accuracy"] > max(0.8, summary["knockoff_accuracy_online"])
    assert (run / "journal.bin").exists() and (run / "checkpoint.pt").exists()
    assert json.loads((run / "attack.json").read_text())["checkpoint_every"] == 50  # 100 steps, at least 50 apart
    assert f"knockoff attack --resume {run}" in out


@pytest.fixture(scope="module")
def keyless_server():
    """`knockoff serve` of the digits world in a subprocess on a free port, with no key."""
    load_digits_victim()  # trained once into the session cache, which the server reads
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "serve", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={k: v for k, v in os.environ.items() if k != "KNOCKOFF_API_KEY"})
    line = proc.stdout.readline()
    assert "http://" in line, line + proc.stdout.read()
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its log
    yield line.split()[-1]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def test_a_remote_attack_needs_no_evaluation_flag_and_names_what_it_did_not_measure(keyless_server, capsys,
                                                                                     tmp_path):
    assert main(["attack", "--victim-url", keyless_server, "--budget", "60", "--quiet", "--logdir",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["retrained"] and 0 <= summary["knockoff_accuracy"] <= 1
    assert 0 <= summary["heldout_agreement"] <= 1  # the attacker's estimate needs no victim query
    assert summary["victim_accuracy"] is None and summary["agreement"] is None and summary["times_victim"] is None
    assert set(summary["not_measured"]) == {"victim_accuracy", "times_victim", "agreement"}
    assert summary["ledger"]["queries"] == 60 and summary["ledger"]["eval_queries"] == 0
    assert "victim accuracy   not measured" in out and "knockoff accuracy " in out
    line = next(line for line in out.splitlines() if line.startswith("not measured"))
    assert "victim accuracy, ×victim, agreement" in line and "is remote" in line and "--eval-via-endpoint" in line


def test_a_cli_run_killed_with_sigkill_resumes_without_any_journaling_flag(tmp_path):
    env = {**os.environ, "KNOCKOFF_RUNS": str(tmp_path)}
    attack = [sys.executable, "-m", "agents.cli", "attack", "--budget", "80", "--seed", "4", "--quiet",
              "--retrain-epochs", "2"]
    proc = subprocess.Popen(attack, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    while not lines or not RUN_LINE.match(lines[-1]):  # printed before the first query
        line = proc.stdout.readline().decode()
        assert line, "".join(lines)
        lines.append(line)
    run = run_dir_from(lines[-1])
    kill_at(proc, run / "journal.bin", 9)
    resumed = subprocess.Popen([sys.executable, "-m", "agents.cli", "attack", "--resume", str(run)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finish(resumed)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["queries"] == summary["victim_queries"] == 80 and summary["retrained"]
    with np.load(run / "transfer_set.npz", allow_pickle=False) as data:
        assert len(np.unique(data["indices"])) == 80


def test_attack_refuses_journaling_options_that_contradict(tmp_path, capsys):
    assert main(["attack", "--quiet", "--budget", "8", "--logdir", str(tmp_path / "a"), "--retrain-epochs", "0"]) == 0
    capsys.readouterr()
    assert main(["attack", "--quiet", "--budget", "8", "--logdir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "already holds a journaled attack" in err and "--resume" in err
    assert json.loads((tmp_path / "a" / "attack.json").read_text())["retrain_epochs"] == 0  # left as it was


def test_every_option_of_every_command_shows_its_default():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, sub in commands.choices.items():
        formatter = sub.formatter_class(prog=sub.prog)
        for action in sub._actions:
            flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction))
            if action.option_strings and not flag and "default" not in formatter._expand_help(action):
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing
    help_text = commands.choices["attack"].format_help()
    assert "0 skips it" in help_text and "(default: 2000)" in help_text


def test_near_chance_advice_names_what_differs_from_runs_that_work():
    scratch = RECIPES["scratch"]
    # the case: a scratch run is never told to use the scratch recipe
    advice = online_advice(scratch, False, scratch.online_lr, 800, 10, 10, retraining=False)
    assert "recipe=" not in advice and "no offline phase" in advice
    advice = online_advice(scratch, False, 0.0005, 800, 10, 10, retraining=False)
    assert "knockoff_lr 0.0005 where the 'scratch' recipe uses 0.01" in advice
    advice = offline_advice(RECIPES["paper"], False, 12, 800, 10, 10)
    assert "recipe 'paper' is made for pretrained knockoffs" in advice and "recipe='scratch'" in advice
    advice = offline_advice(RECIPES["scratch"], True, 12, 800, 10, 10)
    assert "use recipe='paper'" in advice
    advice = offline_advice(scratch.replace(lr=0.001, epochs=5), False, 3, 8 * 10, 10, 3)
    assert "lr 0.001 where the 'scratch' recipe that works uses 0.1" in advice
    assert "epochs 5 where" in advice and f"at least {QUERIES_PER_CLASS}" in advice and "only 3 of its 10" in advice
    advice = offline_advice(scratch, False, 12, 800, 10, 10)
    assert advice.startswith("This run already uses what works") and "recipe=" not in advice
