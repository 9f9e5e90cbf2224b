"""An attack killed with SIGKILL at random moments, even mid-write, resumes to exactly the
budget with no image queried twice, and ends bit-identical to an uninterrupted run (CPU)."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from knockoff_env.durability.journal import TEAR_ENV, header_size, record_dtype
from knockoff_env.worlds.digits import digits_query_set, load_digits_victim

ROOT = Path(__file__).resolve().parents[1]
BUDGET, QPS, CLASSES, EVERY = 400, 4, 10, 7
ATTACK = ["--budget", str(BUDGET), "--seed", "3", "--quiet", "--checkpoint-every", str(EVERY)]


def cli(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agents.cli", "attack", *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def journal_steps(path: Path) -> int:
    """Whole records in the journal at ``path`` (0 while it has no header yet)."""
    data = path.read_bytes() if path.exists() else b""
    size = header_size(data)
    return 0 if size is None else (len(data) - size) // record_dtype(QPS, CLASSES).itemsize


def kill_at(proc: subprocess.Popen, journal: Path, steps: int) -> None:
    """SIGKILL ``proc`` once its journal holds ``steps`` records."""
    deadline = time.monotonic() + 300
    while journal_steps(journal) < steps and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"the attack ended before step {steps}: {proc.stdout.read().decode()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()


def test_sigkill_anywhere_resumes_to_the_same_attack(tmp_path):
    reference, run = tmp_path / "reference", tmp_path / "run"
    finish(cli(*ATTACK, "--logdir", str(reference)))

    rng = random.Random(1234)
    first, second = sorted(rng.sample(range(3, 60), 2))
    journal = run / "journal.bin"
    kill_at(cli(*ATTACK, "--logdir", str(run)), journal, first)          # a random point
    kill_at(cli("--resume", str(run)), journal, second)                   # again, after a resume
    with open(journal, "r+b") as f:                                       # lose the last record's tail
        f.truncate(journal.stat().st_size - 3)
    tear = rng.randrange(second + 2, 90)                                  # die halfway through a write
    torn = cli("--resume", str(run), env={TEAR_ENV: str(tear)})
    torn.wait(timeout=300)
    assert torn.returncode == -signal.SIGKILL
    assert journal_steps(journal) == tear
    finish(cli("--resume", str(run)))

    summary = json.loads((run / "summary.json").read_text())
    assert summary["queries"] == summary["victim_queries"] == BUDGET
    with np.load(run / "transfer_set.npz", allow_pickle=False) as data:
        indices, outputs = data["indices"], data["outputs"]
    assert len(indices) == BUDGET and len(np.unique(indices)) == BUDGET

    images, _, _, _ = digits_query_set()
    victim, _ = load_digits_victim()
    with torch.no_grad():
        expected = torch.softmax(victim(images[torch.from_numpy(indices)]), 1).numpy()
    np.testing.assert_allclose(outputs, expected, atol=1e-5)

    # replay is exact on CPU: the same transfer set, weights and accuracy as without the kills
    with np.load(reference / "transfer_set.npz", allow_pickle=False) as ref:
        assert np.array_equal(ref["indices"], indices) and np.array_equal(ref["outputs"], outputs)
    ours = torch.load(run / "knockoff.pt", weights_only=True)
    theirs = torch.load(reference / "knockoff.pt", weights_only=True)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert summary["knockoff_accuracy"] == json.loads((reference / "summary.json").read_text())["knockoff_accuracy"]
