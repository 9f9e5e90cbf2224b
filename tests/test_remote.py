"""Remote victims: a real `knockoff serve` on 127.0.0.1 attacked over HTTP, with injected faults,
SIGKILLs and resumes; every paid query charged once and journaled once."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import httpx
import numpy as np
import pytest
import torch
from conftest import LinearNet, tiny_world
from miniature import cifar_without_checksums, data_root  # noqa: F401
from served import issue_keys, start_server, wait_until
from test_durability_kill import journal_steps, kill_at

import knockoff_env  # noqa: F401
from agents import GradientBandit, run_attack
from knockoff_env import BlackBox, KnockoffEnv
from knockoff_env.durability.journal import TEAR_ENV, Journal
from knockoff_env.serve import VictimService, create_app, issue_key, listening_socket
from knockoff_env.serve import server as uvicorn_server
from knockoff_env.victim.detectors import Detector
from knockoff_env.victim.remote import RemoteEvaluationError, RemoteUnavailableError, RemoteVictim, RemoteVictimError
from knockoff_env.victim.wire import decode, encode
from knockoff_env.worlds.digits import digits_query_set, load_digits_victim

ROOT = Path(__file__).resolve().parents[1]
KEY = "s3cret-test-key-9f2"  # the owner's (--api-key-env); each client has a key of its own
CLIENTS = {"clean": True, "faults": False, "malformed": False, "width": False, "down": False, "noeval": False,
           "ids": False, "killed": True}  # name: may evaluate
FAULTS = {
    "faults": {"2": "500", "4": "timeout", "6": "drop", "8": "429", "10": "500"},
    "malformed": {"3": "malformed"},
    "width": {"3": "width"},
    "down": {"1": "500", "2": "500", "3": "500"},
}
FAST = {"timeout": 2.0, "backoff": 0.05}  # the server holds a "timeout" fault's answer for 4 s; 2 s leaves a loaded
# machine time to answer the other requests before the client gives up on them
ANONYMOUS = "anonymous@127.0.0.1"  # a client of a server without keys


@pytest.fixture(scope="module")
def client_keys(tmp_path_factory) -> tuple[Path, dict]:
    """A state folder with one API key per client of the tests."""
    state = tmp_path_factory.mktemp("state")
    return state, issue_keys(state, CLIENTS)


@pytest.fixture(scope="module")
def server(client_keys):
    """`knockoff serve` of the digits world in a subprocess, on a free port, with a key per client."""
    load_digits_victim()  # trained once into the session cache, which the server reads
    served = start_server("--max-batch", "64", "--state", str(client_keys[0]), "--api-key-env", "SERVER_KEY",
                          "--inject-faults", json.dumps(FAULTS), "--fault-delay", "4",
                          env={"SERVER_KEY": KEY})
    assert httpx.get(f"{served.url}/health", timeout=30).json()["max_batch"] == 64
    yield served.url
    served.stop()


@pytest.fixture
def as_client(monkeypatch, client_keys):
    """``as_client(name)``: the attacks that follow send ``name``'s key ($KNOCKOFF_API_KEY)."""
    return lambda name: monkeypatch.setenv("KNOCKOFF_API_KEY", client_keys[1][name])


def usage(url: str, client: str) -> dict:
    """``client``'s counts, as the owner reads them."""
    return httpx.get(f"{url}/usage", headers={"Authorization": f"Bearer {KEY}"}).json().get(client, {})


def digits_expected(indices: np.ndarray) -> np.ndarray:
    images, _, _, _ = digits_query_set()
    victim, _ = load_digits_victim()
    with torch.no_grad():
        return torch.softmax(victim(images[torch.from_numpy(indices)]), 1).numpy()


def play(env, steps: int | None = None):
    env.reset(seed=0) if steps is None else None
    done, taken = False, 0
    while not done and (steps is None or taken < steps):
        done = env.step(env.action_space.sample())[2]
        taken += 1


def test_attack_charges_exactly_the_budget_and_matches_in_process(server, as_client):
    as_client("clean")
    env = gym.make("Knockoff-Digits-v0", budget=200, victim=server,
                   remote={"eval_via_endpoint": True, "price_per_query": 0.002})
    result = run_attack(env, GradientBandit(env), seed=1, progress=False)
    assert usage(server, "clean") == {"charged": 200, "eval": 540, "requests": 50 + 9, "repeats": 0}
    ledger = result["ledger"]
    assert (ledger["queries"], ledger["eval_queries"], ledger["retries"]) == (200, 540, 0)
    assert ledger["cost"] == pytest.approx(0.4) and ledger["eval_cost"] == pytest.approx(1.08)
    indices, outputs = env.unwrapped.transfer_set.view()
    np.testing.assert_allclose(outputs, digits_expected(indices), atol=1e-6)

    local = gym.make("Knockoff-Digits-v0", budget=200)  # the same attack on the in-process victim
    reference = run_attack(local, GradientBandit(local), seed=1, progress=False)
    assert np.array_equal(local.unwrapped.transfer_set.view()[0], indices)
    assert result["knockoff_accuracy"] == reference["knockoff_accuracy"]
    assert result["victim_accuracy"] == reference["victim_accuracy"]


def test_retryable_faults_end_at_the_budget_charged_once(server, as_client):
    as_client("faults")
    env = gym.make("Knockoff-Digits-v0", budget=60, victim=server, remote=FAST).unwrapped
    play(env)
    assert env.spent == 60
    # 15 steps, 5 of them retried once: 500 and 429 were never charged; the answers held past
    # the timeout and cut mid-way were charged, and their retries answered again for free
    assert env.victim.usage() == {"charged": 60, "eval": 0, "requests": 20, "repeats": 2}
    ledger = env.victim.ledger()
    assert (ledger["queries"], ledger["retries"], ledger["repeats"]) == (60, 5, 2)
    assert ledger["seconds_waiting"] >= 3.0  # one client timeout (2 s) and one Retry-After (1 s)
    indices, outputs = env.transfer_set.view()
    np.testing.assert_allclose(outputs, digits_expected(indices), atol=1e-6)


@pytest.mark.parametrize("fault, message", [("malformed", "malformed: the body is not safetensors"),
                                            ("width", r"has shape \(4, 11\), expected \(4, 10\)")])
def test_unusable_answers_stop_with_the_request_named(server, as_client, fault, message):
    as_client(fault)
    env = gym.make("Knockoff-Digits-v0", budget=40, victim=server, remote=FAST).unwrapped
    env.reset(seed=0)
    play(env, 2)
    left = env.query_set.remaining().sum()
    with pytest.raises(RemoteVictimError, match=rf"request [0-9a-f-]{{36}}: .*{message}"):
        env.step(env.action_space.sample())
    assert env.spent == len(env.transfer_set) == 8
    assert env.query_set.remaining().sum() == left  # the step's images went back to their pools


def test_a_victim_that_stays_down_spends_nothing_and_the_step_can_be_retried(server, as_client):
    as_client("down")
    env = gym.make("Knockoff-Digits-v0", budget=40, victim=server, remote={"retries": 2, **FAST}).unwrapped
    env.reset(seed=0)
    with pytest.raises(RemoteUnavailableError, match="no answer .* after 3 attempts .*500 injected fault"):
        env.step(np.array([0, 0]))
    assert env.spent == 0 and usage(server, "down")["charged"] == 0
    env.step(np.array([0, 0]))
    assert env.spent == 4 and usage(server, "down")["charged"] == 4


def test_a_wrong_key_is_refused_and_evaluation_without_permission_asks_nothing(server, monkeypatch, as_client):
    monkeypatch.setenv("KNOCKOFF_API_KEY", "wrong")
    with pytest.raises(RemoteVictimError, match="refused the API key"):  # at once, before any step
        gym.make("Knockoff-Digits-v0", budget=40, victim=server)
    as_client("noeval")
    env = gym.make("Knockoff-Digits-v0", budget=40, victim=server)
    with pytest.raises(RemoteEvaluationError, match="--eval-via-endpoint"):
        env.unwrapped.victim.evaluation_model()
    result = run_attack(env, GradientBandit(env), seed=0, progress=False)
    assert usage(server, "noeval")["charged"] == 40 and usage(server, "noeval")["eval"] == 0
    assert result["victim_accuracy"] is None and 0 <= result["knockoff_accuracy"] <= 1
    assert set(result["not_measured"]) == {"victim_accuracy", "times_victim", "agreement"}


def test_request_ids_are_idempotent(server, client_keys):
    images = encode("images", np.random.default_rng(0).random((3, 1, 8, 8), np.float32))
    headers = {"Authorization": f"Bearer {client_keys[1]['ids']}", "X-Request-Id": "r-1"}
    first = httpx.post(f"{server}/query", content=images, headers=headers)
    again = httpx.post(f"{server}/query", content=images, headers=headers)
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert decode("probs", first.content).shape == (3, 10)
    assert usage(server, "ids")["charged"] == 3  # answered twice, charged once
    other = encode("images", np.zeros((3, 1, 8, 8), np.float32))
    assert httpx.post(f"{server}/query", content=other, headers=headers).status_code == 409
    bad = httpx.post(f"{server}/query", content=encode("images", np.zeros((2, 8, 8), np.float32)),
                     headers={**headers, "X-Request-Id": "r-2"})
    assert bad.status_code == 400 and "(n, 1, 8, 8)" in bad.json()["detail"]
    assert httpx.post(f"{server}/query", content=images, headers={"X-Request-Id": "r-3"}).status_code == 401


@pytest.mark.slow
@pytest.mark.timeout(900)  # four attack processes start one after the other: minutes on a loaded machine
def test_sigkill_and_resume_against_the_server(server, client_keys, tmp_path):
    """3 kills (two anywhere, one halfway through a journal write, after the server charged the
    step) and resumes: server-charged == journal records == budget; the key is saved nowhere."""
    budget, run, key = 60, tmp_path / "run", client_keys[1]["killed"]

    def cli(*args, env=None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "agents.cli", "attack", *args], cwd=ROOT,
                                env={**os.environ, "KNOCKOFF_API_KEY": key, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    attack = ["--budget", str(budget), "--seed", "2", "--quiet", "--checkpoint-every", "4", "--victim-url", server,
              "--eval-via-endpoint", "--logdir", str(run), "--retrain-epochs", "0"]
    rng = random.Random(7)
    first, second = sorted(rng.sample(range(2, 9), 2))
    journal = run / "journal.bin"
    kill_at(cli(*attack), journal, first)
    kill_at(cli("--resume", str(run)), journal, second)
    held = journal_steps(journal)  # what the kill left: the attack may have stepped past `second`
    tear = rng.randrange(held + 2, budget // 4)
    torn = cli("--resume", str(run), env={TEAR_ENV: str(tear)})
    torn.wait(timeout=300)
    assert torn.returncode == -signal.SIGKILL
    out, _ = (done := cli("--resume", str(run))).communicate(timeout=300)
    assert done.returncode == 0, out.decode()

    reopened, records = Journal.open(journal, _journal_config(run))
    reopened.close()
    summary = json.loads((run / "summary.json").read_text())
    counted = usage(server, "killed")
    assert counted["charged"] == int(records["n"].sum()) == summary["queries"] == budget
    assert counted["repeats"] >= 1  # the torn step's answer, paid before the kill, was fetched again free
    assert counted["eval"] == 540 and summary["ledger"]["queries"] == budget
    assert (records["request"] != 0).any(axis=1).all()  # every record names its request
    with np.load(run / "transfer_set.npz", allow_pickle=False) as data:
        assert len(np.unique(data["indices"])) == budget
        np.testing.assert_allclose(data["outputs"], digits_expected(data["indices"]), atol=1e-6)
    for path in run.iterdir():
        assert key.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    assert key not in out.decode()


def _journal_config(run: Path) -> dict:
    """The configuration the run's journal was written for (from its header)."""
    from knockoff_env.durability.journal import _FIXED, MAGIC
    data = (run / "journal.bin").read_bytes()
    length = _FIXED.unpack_from(data, len(MAGIC))[3]
    start = len(MAGIC) + _FIXED.size
    return json.loads(data[start:start + length])


@contextmanager
def serving(service: VictimService):
    """A real uvicorn server for ``service`` in a thread, on a free port of 127.0.0.1."""
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn_server(create_app(service))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 60, "the in-thread uvicorn server to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_custom_world_behind_a_rate_limit_with_a_local_copy_for_evaluation():
    (x, y), victim, hierarchy = tiny_world(per_label=8)
    service = VictimService(BlackBox(victim, device="cpu", output="top_k", top_k=2), (6,), max_batch=8,
                            rate_limit=16)
    with serving(service) as url:
        env = KnockoffEnv(victim=url, query_set=(x, y), hierarchy=hierarchy, knockoff=lambda: LinearNet(),
                          eval_set=(x, y % 3), budget=30, device="cpu",
                          remote={"local_copy": victim, "backoff": 0.05})
        result = run_attack(env, GradientBandit(env), seed=0, progress=False)
    counted = service.usage()[ANONYMOUS]  # no keys: the client is its address
    assert counted["charged"] == 30 and counted["eval"] == 0
    assert result["ledger"]["retries"] >= 1  # 16 queries in the bucket, then 429s with Retry-After
    assert result["ledger"]["seconds_waiting"] >= 0.8
    _, outputs = env.transfer_set.view()
    assert ((outputs > 0).sum(1) <= 2).all()  # the server's output mode (top-2) reached the attacker
    assert result["victim_accuracy"] == env.evaluate()["victim_accuracy"]


@pytest.mark.parametrize("env_id, options", [
    ("Knockoff-Caltech256-v0", dict(query_set="d2", arch="resnet18", knockoff_init="scratch", image_size=64)),  # 64 px: a
    # one-image step still leaves ResNet batch norm more than one value per channel
    ("Knockoff-MNIST-v0", {})])
def test_a_registered_world_attacks_its_victim_served_over_http(data_root, env_id, options):
    local = gym.make(env_id, data_root=data_root, budget=12, device="cpu", **options).unwrapped
    shape = tuple(local.query_set.fetch(np.zeros(1, np.int64)).shape[1:])
    service = VictimService(local.victim, shape, max_batch=8)
    with serving(service) as url:
        env = gym.make(env_id, data_root=data_root, budget=12, device="cpu", victim=url,
                       remote={"eval_via_endpoint": True}, **options)
        world = env.unwrapped
        assert world.num_classes == local.num_classes
        assert type(world.knockoff.model) is type(local.knockoff.model)  # the architecture the world would use
        result = run_attack(env, GradientBandit(env), seed=0, progress=False)
    assert service.usage()[ANONYMOUS]["charged"] == result["queries"] == 12
    assert service.usage()[ANONYMOUS]["eval"] == len(world.eval_set[1])
    assert result["victim_accuracy"] == local.evaluate()["victim_accuracy"]  # the same victim, over HTTP


class AlarmAt(Detector):
    """A monitor that fires at a query known in advance, so the test knows where the alarm is."""

    name = "alarm_at"

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def observe(self, images, answers):
        if self.alarm_at is None and self.seen + len(answers) >= self.at:
            index, self.alarm_at, self.seen = self.at - self.seen - 1, self.at, self.at
            return index
        self.seen += len(answers)
        return None

    def _params(self):
        return {"at": self.at}


@pytest.mark.parametrize("on_detection", ["terminate", "flag"])
def test_the_servers_detector_ends_or_flags_the_attack(on_detection, monkeypatch):
    (x, y), victim, hierarchy = tiny_world(per_label=8)
    service = VictimService(BlackBox(victim, device="cpu"), (6,), max_batch=8, detector=AlarmAt(10))
    for name in ("watched", "unwatched"):
        monkeypatch.setenv(f"{name.upper()}_KEY", issue_key(service.store, name))
    with serving(service) as url:
        env = KnockoffEnv(victim=url, query_set=(x, y), hierarchy=hierarchy, knockoff=lambda: LinearNet(),
                          budget=30, device="cpu", on_detection=on_detection, remote={"api_key_env": "WATCHED_KEY"})
        result = run_attack(env, GradientBandit(env), seed=0, progress=False)
        assert RemoteVictim(url, api_key_env="WATCHED_KEY").server_alarm == 10  # what a resumed run learns first
        assert RemoteVictim(url, api_key_env="UNWATCHED_KEY").server_alarm is None  # one monitor per client
    assert result["detector"] == "server:alarm_at:at=10" and result["detected_at"] == 10
    if on_detection == "terminate":  # the third request (queries 9–12) raised it; the attack keeps 10
        assert result["queries"] == len(env.unwrapped.transfer_set) == 10
        assert service.usage()["watched"]["charged"] == 12
    else:
        assert result["queries"] == service.usage()["watched"]["charged"] == 30
