"""Sweeps on a real Ray cluster: a head and a worker node started with `ray start` on this machine
(each with its own temp dir and worker ports, token authentication off), the CLI joining them with
``--address``; the worker's raylet killed mid-trial. Also the two ways joining a cluster fails."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray  # noqa: F401 - a missing dev dependency fails here, not as a skip
import yaml

from agents.sweep.trial import CLOCK, RESULT, STARTS

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
NODE = ["--num-cpus=1", "--disable-usage-stats", "--object-store-memory=100000000",
        "--dashboard-agent-listen-port=0", "--node-ip-address=127.0.0.1"]


def ray_env(home: Path | None = None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(ROOT), **extra)
    if home is not None:
        env["HOME"] = str(home)
    return env


def start_node(temp_dir: str, env: dict, *args: str) -> None:
    done = subprocess.run([RAY, "start", f"--temp-dir={temp_dir}", *NODE, *args], env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


def ray_processes(temp_dir: str) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose command line names ``temp_dir``, and their children."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and temp_dir in cmd:
            found.append((int(proc.name), cmd))
    pids = {p for p, _ in found}
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent in pids and int(proc.name) not in pids:
            found.append((int(proc.name), ""))
    return found


def stop_nodes(*temp_dirs: str) -> None:
    """End exactly the processes of these nodes (never `ray stop`: it ends every Ray on the machine)."""
    for temp_dir in temp_dirs:
        for pid, _ in ray_processes(temp_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node, one CPU each, on this machine; yields (address, head dir, worker dir)."""
    from knockoff_env.worlds.digits import load_digits_victim

    load_digits_victim()  # trained once into the cache the nodes' workers read
    head, worker = tempfile.mkdtemp(prefix="kh", dir="/tmp"), tempfile.mkdtemp(prefix="kw", dir="/tmp")
    env = ray_env(RAY_AUTH_MODE="disabled")
    try:
        start_node(head, env, "--head", "--port=0", "--include-dashboard=false",
                   "--min-worker-port=10002", "--max-worker-port=14999")
        address = (Path(head) / "ray_current_cluster").read_text().strip()
        start_node(worker, env, f"--address={address}", "--min-worker-port=15000", "--max-worker-port=19999")
        run_on(address, node_id(worker), env)  # its first worker process is up before a sweep counts on it
        yield address, head, worker
    finally:
        stop_nodes(worker, head)
        for folder in (head, worker):
            shutil.rmtree(folder, ignore_errors=True)


WARM = """import sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=sys.argv[1])
task = ray.remote(lambda: 1).options(scheduling_strategy=NodeAffinitySchedulingStrategy(sys.argv[2], soft=False))
assert ray.get(task.remote(), timeout=240) == 1
"""


def run_on(address: str, node: str, env: dict) -> None:
    """Run one task on ``node`` (on a loaded machine a node's first worker process takes a minute to start)."""
    done = subprocess.run([sys.executable, "-c", WARM, address, node], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"the worker node ran no task: {done.stdout[-2000:]}{done.stderr[-2000:]}"


def node_id(temp_dir: str) -> str:
    raylet = next(cmd for _, cmd in ray_processes(temp_dir) if "raylet/raylet" in cmd)
    return raylet.split("--node_id=")[1].split()[0]


def sweep_cli(*args, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agents.cli", "sweep", *map(str, args), "--quiet"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def starts_on(trial: Path) -> list[str]:
    path = trial / STARTS
    return [json.loads(line)["node"] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(900)  # two Ray nodes, a sweep waited on for up to 300 + 400 s: minutes on a loaded machine
def test_trials_spread_over_two_nodes_and_a_killed_worker_node_loses_none(cluster, tmp_path):
    address, head, worker = cluster
    spec = tmp_path / "two_nodes.yaml"
    spec.write_text(yaml.safe_dump({"env": "Knockoff-Digits-v0", "axes": {"seed": [0, 1, 2, 3, 4, 5]},
                                    "agent": "adaptive", "env_options": {"budget": 100},
                                    "run": {"eval_every": 50, "retrain_epochs": 1, "checkpoint_every": 2}}))
    out = tmp_path / "sweep"
    proc = sweep_cli(spec, "--out", out, "--address", address, "--max-retries", "3",
                     env=ray_env(RAY_AUTH_MODE="disabled"))
    worker_node, head_node = node_id(worker), node_id(head)
    trials = lambda: list((out / "trials").glob("*")) if (out / "trials").exists() else []  # noqa: E731
    done_on_worker = lambda: [t for t in trials()  # noqa: E731
                              if (t / RESULT).exists() and starts_on(t) == [worker_node]]

    def busy_on_worker():  # a trial mid-attack on the worker node, with answers in its journal
        return [t for t in trials() if not (t / RESULT).exists() and starts_on(t)[-1:] == [worker_node]
                and (t / "journal.bin").exists() and (t / "journal.bin").stat().st_size > 2000]
    deadline = time.monotonic() + 300
    while not (done_on_worker() and busy_on_worker()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read()
    busy = busy_on_worker()
    stop_nodes(worker)  # the worker node dies mid-trial: its raylet and every worker process, at once
    victims = [t for t in busy if not (t / RESULT).exists()]  # less any that wrote its result just before
    assert victims, "every trial busy on the worker finished as its node was killed: nothing was cut short"
    output, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, output
    assert "do not see" not in output  # both nodes share this machine's disk: the marker check passes

    table = json.loads(json.dumps(__import__("pandas").read_parquet(out / "results.parquet")
                                  .drop(columns=["curve_queries", "curve_accuracy"]).to_dict("records")))
    assert len(table) == 6 and all(r["status"] == "ok" and r["queries"] == 100 for r in table), table
    assert {r["node"] for r in table} == {head_node, worker_node}  # spread over both; the column filled
    assert all(r["host"] == socket.gethostname() for r in table)
    for victim in victims:  # retried on the head node, resumed from its journal, to exactly its budget
        row = next(r for r in table if r["trial"] == victim.name)
        assert starts_on(victim) == [worker_node, head_node] and row["node"] == head_node
        assert row["resumed"] and row["starts"] == 2 and row["victim_queries"] <= 100
        clock = json.loads((victim / CLOCK).read_text())["starts"]
        assert len(clock) == 2 and clock[0] > 0 and row["seconds"] == pytest.approx(sum(clock))  # killed start counted


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_with_no_cluster_fails_within_seconds_with_one_line(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"env": "Knockoff-Digits-v0", "env_options": {"budget": 20}}))
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    proc = sweep_cli(spec, "--out", tmp_path / "out", "--address", address, env=ray_env())
    output, _ = proc.communicate(timeout=120)  # a hang fails here
    assert proc.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("knockoff sweep: error:")]
    assert len(errors) == 1 and address in errors[0] and "no Ray cluster answers" in errors[0], output
    assert "Traceback" not in output and time.monotonic() - start < 60


@pytest.mark.slow
def test_a_cluster_that_refuses_the_token_is_named_as_such(tmp_path):
    head = tempfile.mkdtemp(prefix="ka", dir="/tmp")
    (tmp_path / "cluster_home").mkdir()
    (tmp_path / "driver_home").mkdir()
    token = secrets.token_hex(32)
    try:  # what `ray start` does when its user has a token (~/.ray/auth_token): token authentication on
        start_node(head, ray_env(tmp_path / "cluster_home", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token),
                   "--head", "--port=0", "--include-dashboard=false")
        address = (Path(head) / "ray_current_cluster").read_text().strip()
        spec = tmp_path / "s.yaml"
        spec.write_text(yaml.safe_dump({"env": "Knockoff-Digits-v0", "env_options": {"budget": 20}}))
        proc = sweep_cli(spec, "--out", tmp_path / "out", "--address", address, "--connect-timeout", "3",
                         env=ray_env(tmp_path / "driver_home"))
        output, _ = proc.communicate(timeout=120)
    finally:
        stop_nodes(head)
        shutil.rmtree(head, ignore_errors=True)
    assert proc.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("knockoff sweep: error:")]
    assert len(errors) == 1 and address in errors[0], output
    assert "refused this driver's authentication token" in errors[0] and "RAY_AUTH_MODE=token" in errors[0]
