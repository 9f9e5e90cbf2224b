"""The served victim's state in its database: what a new server on the same state finds, and
memory bounded per client and in total (detectors, stored answers, anonymous addresses)."""
import re
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import torch
from conftest import LinearNet, tiny_world

from knockoff_env import BlackBox
from knockoff_env.serve import Identity, ServiceError, StateStore, VictimService, create_app, listening_socket, server
from knockoff_env.victim.detectors import Detector
from knockoff_env.victim.wire import decode, encode


class Counting(Detector):
    """Fires once it has seen ``at`` queries; its state is how many it saw (and when it fired)."""

    name = "counting"

    def __init__(self, at: int = 10**9):
        super().__init__()
        self.at = at

    def observe(self, images, answers):
        index = None
        if self.alarm_at is None and self.seen + len(answers) >= self.at:
            index, self.alarm_at = self.at - self.seen - 1, self.at
        self.seen += len(answers)
        return index

    def _params(self):
        return {"at": self.at}


def service(state=None, **options) -> VictimService:
    _, victim, _ = tiny_world()
    return VictimService(BlackBox(victim, device="cpu"), (6,), max_batch=8, state=state, **options)


def body(n: int, seed: int) -> bytes:
    return encode("images", np.random.default_rng(seed).random((n, 6), np.float32))


def ask(svc: VictimService, client: str, request: str, n: int = 4, seed: int = 0, purpose: str = "attack"):
    return svc.query(Identity(client, eval=True), request, purpose, body(n, seed))


def test_a_new_server_on_the_same_state_finds_everything(tmp_path):
    first = service(tmp_path, detector=Counting(at=14))
    answers = [ask(first, "mallory", f"r{i}", seed=i)[0] for i in range(3)]
    ask(first, "mallory", "e0", seed=9, purpose="eval")
    ask(first, "trudy", "r0")
    before = first.usage()
    first.store.close()  # as a killed process leaves it: every answer was committed before it left

    again = service(tmp_path, detector=Counting(at=14))
    assert again.usage() == before == {"mallory": {"charged": 12, "eval": 4, "requests": 4, "repeats": 0},
                                       "trudy": {"charged": 4, "eval": 0, "requests": 1, "repeats": 0}}
    assert again.alarm("mallory") == 12 and again.alarm("trudy") is None  # fired by the evaluation queries
    assert again.monitors.get("mallory").seen == 16 and again.monitors.get("trudy").seen == 4
    repeat, headers, _ = ask(again, "mallory", "r1", seed=1)  # a retry after the restart: free
    assert repeat == answers[1] and headers == {"X-Repeat": "1"}
    assert again.usage()["mallory"]["charged"] == 12 and again.usage()["mallory"]["repeats"] == 1
    with pytest.raises(ServiceError) as reused:
        ask(again, "mallory", "r1", seed=5)
    assert reused.value.status == 409


def test_evaluation_can_be_kept_out_of_the_detector():
    svc = service(detector=Counting(), monitor_eval=False)
    ask(svc, "owner-eval", "e", purpose="eval")
    ask(svc, "owner-eval", "a")
    assert svc.monitors.get("owner-eval").seen == 4 and svc.health()["eval_monitored"] is False


def test_a_state_folder_serves_only_the_service_it_was_made_for(tmp_path):
    service(tmp_path).store.close()
    with pytest.raises(ValueError, match="another service.*new --state folder"):
        service(tmp_path, detector=Counting())


def test_live_detectors_are_bounded_and_restored_from_the_database():
    svc = service(detector=Counting(), live_monitors=2)
    for round_ in range(2):
        for client in ("a", "b", "c", "d", "e"):
            ask(svc, client, f"{client}{round_}", n=1 + round_)
            assert len(svc.monitors) <= 2
    assert [svc.monitors.get(c).seen for c in "abcde"] == [3] * 5  # each counted both of its batches


def test_stored_answers_are_bounded_per_client_and_in_total():
    svc = service(keep_answers=3, max_answer_mib=2000 / 2 ** 20)  # three answers each, about 2 kB in all
    for i in range(5):
        ask(svc, "a", f"a{i}", seed=i)
    kept = svc.store.all("SELECT request FROM answers WHERE client = 'a' ORDER BY seq")
    assert [r for (r,) in kept] == ["a2", "a3", "a4"]
    for i in range(20):
        ask(svc, f"c{i}", "r", seed=i)
    total = svc.store.one("SELECT SUM(LENGTH(body)), COUNT(*) FROM answers")
    assert total[0] <= 2000 and total[0] == svc.store.answer_bytes and total[1] >= 1
    assert svc.store.stored("c19", "r") is not None  # the newest is always kept


def test_anonymous_addresses_are_bounded():
    svc = service(max_anonymous=3)
    names = [svc.anonymous(f"10.0.0.{i}").name for i in range(3)]
    for name in names:
        ask(svc, name, "r")
    assert svc.anonymous("10.0.0.1").name == "anonymous@10.0.0.1"  # one it knows is still served
    with pytest.raises(ServiceError) as full:
        svc.anonymous("10.0.0.9")
    assert full.value.status == 503 and "knockoff keys add" in full.value.detail
    with pytest.raises(ServiceError) as bad:
        svc.anonymous("client-chosen-name")
    assert bad.value.status == 400


def test_a_victim_that_overflows_gets_a_400_and_charges_nothing():
    model = LinearNet()
    with torch.no_grad():
        model.fc.weight.fill_(1e36)
    svc = VictimService(BlackBox(model, device="cpu"), (6,), max_batch=8)
    with pytest.raises(ServiceError) as refused:
        svc.query(Identity("x"), "r", "attack", encode("images", np.full((2, 6), 1e3, np.float32)))
    assert refused.value.status == 400 and "nothing was charged" in refused.value.detail
    assert svc.usage()["x"]["charged"] == 0


@contextmanager
def serving(svc: VictimService):
    sock = listening_socket("127.0.0.1", 0)
    uv = server(create_app(svc))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "waited 30 s for the in-thread server to start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("trust_proxy", [False, True])
def test_without_keys_a_client_is_its_address_and_proxy_headers_need_trust(trust_proxy):
    svc = service(trust_proxy=trust_proxy)
    with serving(svc) as url:
        spoofed = {"X-Client-Id": "victim-of-spoofing", "X-Forwarded-For": "203.0.113.7, 198.51.100.2"}
        answer = httpx.post(f"{url}/query", content=body(2, 0), headers={"X-Request-Id": "x", **spoofed})
        assert answer.status_code == 200 and decode("probs", answer.content).shape == (2, 3)
        bad = httpx.post(f"{url}/query", content=body(2, 0), headers={"X-Request-Id": "y",
                                                                       "X-Forwarded-For": "me, <script>"})
        assert bad.status_code == (400 if trust_proxy else 200)
        identity = httpx.get(f"{url}/whoami", headers=spoofed).json()["client"]
    expected = "anonymous@198.51.100.2" if trust_proxy else "anonymous@127.0.0.1"  # the proxy's last entry
    assert identity == expected and svc.usage()[expected]["charged"] == (2 if trust_proxy else 4)
    assert svc.health()["identity"] == ("forwarded address" if trust_proxy else "peer address")


def test_a_store_is_one_sqlite_database_in_wal_mode(tmp_path):
    store = StateStore(tmp_path)
    assert store.one("PRAGMA journal_mode")[0] == "wal" and (tmp_path / "state.db").exists()
    store.close()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "state.db").write_bytes(b"not a database, but 100 bytes long " * 3)
    with pytest.raises(ValueError, match="not a knockoff serve state database"):
        StateStore(tmp_path / "other")


def test_a_prada_state_restored_from_the_database_goes_on_exactly_as_the_live_one():
    from knockoff_env.serve.monitors import pack_state, unpack_state
    from knockoff_env.victim.detectors import PRADA

    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.random((4, 1, 8, 8), np.float32)) for _ in range(30)]
    answers = [torch.softmax(torch.from_numpy(rng.normal(size=(4, 3)).astype(np.float32)), 1) for _ in range(30)]
    live = PRADA(delta=0.99, min_distances=45)  # tests from the 45th distance on: after the restore
    for x, y in zip(batches[:10], answers[:10]):
        live.observe(x, y)
    assert live.alarm_at is None and live.seen == 40
    restored = PRADA(delta=0.99, min_distances=45)
    restored.load_state_dict(unpack_state(pack_state(live.state_dict())))
    for x, y in zip(batches[10:], answers[10:]):
        assert live.observe(x, y) == restored.observe(x, y)
    assert live.alarm_at == restored.alarm_at is not None and live.seen == restored.seen
    assert np.array_equal(live.distances, restored.distances) and live.statistic() == restored.statistic()


def test_key_and_client_mistakes_are_one_clear_line(capsys, tmp_path):
    from agents.cli import main

    line = r"^knockoff [\w-]+: error: .+ — .+$"
    assert main(["keys", "list", "--state", str(tmp_path / "nowhere")]) == 2
    assert re.match(line, err := capsys.readouterr().err.strip()) and "state.db not found" in err
    assert main(["keys", "add", "bad name!", "--state", str(tmp_path)]) == 2
    assert re.match(line, err := capsys.readouterr().err.strip()) and "not a client name" in err
    assert main(["keys", "revoke", "nobody", "--state", str(tmp_path)]) == 2
    assert "no active key named 'nobody'" in capsys.readouterr().err
    assert main(["attack", "--quiet", "--budget", "8", "--victim-url", "http://127.0.0.1:9",
                 "--remote-arg", "client_id=me"]) == 2
    assert re.match(line, err := capsys.readouterr().err.strip()) and "drop client_id" in err
