"""The owner's side of `knockoff serve`, against a real server in a subprocess: clients known by
their keys only, evaluation only with the right, revocation, bodies refused before they are read,
stalled connections dropped, out-of-range pixels refused, and the client's handling of Retry-After."""
import json
import math
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from served import issue_keys, peak_rss_mib, start_server, wait_until

from agents.cli import main
from knockoff_env.victim.remote import RemoteEvaluationError, RemoteUnavailableError, RemoteVictim
from knockoff_env.victim.wire import decode, encode
from knockoff_env.worlds.digits import load_digits_victim

OWNER = "owner-key-for-tests-4e1"
RIGHTS = {"alice": False, "bob": True, "carol": False, "ra": False, "last": False}  # name: may evaluate
FAULTS = {"ra": {"1": "retry-after=inf", "2": "retry-after=1e9", "3": "retry-after=-5", "4": "retry-after=nan"},
          "last": {"1": "retry-after=1e9", "2": "retry-after=1e9"}}
MAX_BATCH, MIB = 16, 2 ** 20
PRADA = "prada:delta=0.999,min_distances=10"  # fires on ~a dozen random images: the tests know when


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    folder = tmp_path_factory.mktemp("state")
    return folder, issue_keys(folder, RIGHTS)


@pytest.fixture(scope="module")
def served(state):
    load_digits_victim()  # into the session cache, which the server reads
    server = start_server("--state", str(state[0]), "--max-batch", str(MAX_BATCH), "--api-key-env", "OWNER_KEY",
                          "--detector", PRADA, "--header-timeout", "1", "--body-timeout", "1",
                          "--inject-faults", json.dumps(FAULTS), env={"OWNER_KEY": OWNER})
    yield server
    server.stop()


def images(n: int, seed: int, scale: float = 1.0) -> bytes:
    return encode("images", (np.random.default_rng(seed).random((n, 1, 8, 8), np.float32) * scale))


def post(url: str, key: str | None, body: bytes, request: str, **headers) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/query", content=body, headers={"X-Request-Id": request, **auth, **headers}, timeout=30)


def owner_usage(url: str) -> dict:
    return httpx.get(f"{url}/usage", headers={"Authorization": f"Bearer {OWNER}"}).json()


def test_spoofed_identity_headers_change_nothing(served, state):
    url, keys = served.url, state[1]
    before = owner_usage(url)
    spoof = {"X-Client-Id": "bob", "X-Forwarded-For": "10.9.8.7", "X-Real-IP": "10.9.8.7"}
    answers = [post(url, keys["alice"], images(8, i), f"spoof-{i}", **spoof) for i in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    alarm = int(answers[-1].headers["X-Detected-At"])  # alice's detector fired on her 24 queries
    assert 0 < alarm <= 24
    for i in range(20):  # 20 made-up names: each answered as alice, none remembered
        answer = post(url, keys["alice"], images(1, 100 + i), f"made-up-{i}", **{"X-Client-Id": f"fresh-{i}"})
        assert answer.status_code == 200 and answer.headers["X-Detected-At"] == str(alarm)
    named_alice = post(url, keys["bob"], images(8, 50), "as-alice", **{"X-Client-Id": "alice"})
    assert "X-Detected-At" not in named_alice.headers  # bob cannot set off alice's alarm, nor charge her
    counts = owner_usage(url)
    charged = {name: counts[name]["charged"] - before.get(name, {}).get("charged", 0) for name in ("alice", "bob")}
    assert charged == {"alice": 24 + 20, "bob": 8}
    assert not any(name.startswith(("fresh", "10.9", "anonymous")) for name in counts)
    own = httpx.get(f"{url}/usage", headers={"Authorization": f"Bearer {keys['alice']}"}).json()
    assert list(own) == ["alice"]  # a client sees only its own usage
    assert httpx.get(f"{url}/alarm", headers={"Authorization": f"Bearer {keys['alice']}",
                                              "X-Client-Id": "carol"}).json() == {"client": "alice",
                                                                                  "detected_at": alarm}


def test_evaluation_queries_need_the_eval_right_and_are_still_monitored(served, state, monkeypatch):
    url, keys = served.url, state[1]
    before = owner_usage(url)
    zero = dict.fromkeys(("charged", "eval", "requests", "repeats"), 0)
    refused = post(url, keys["carol"], images(8, 7), "free?", **{"X-Purpose": "eval"})
    assert refused.status_code == 403 and "--eval" in refused.json()["detail"]
    assert owner_usage(url).get("carol", zero) == before.get("carol", zero)  # nothing answered, nothing counted
    monkeypatch.setenv("CAROL_KEY", keys["carol"])
    victim = RemoteVictim(url, api_key_env="CAROL_KEY", eval_via_endpoint=True)
    with pytest.raises(RemoteEvaluationError, match="no eval right"):
        victim.evaluation_model()  # the runner asks this before the attack's first query
    evaluated = [post(url, keys["bob"], images(8, 200 + i), f"eval-{i}", **{"X-Purpose": "eval"}) for i in range(3)]
    assert [e.status_code for e in evaluated] == [200] * 3
    bob, earlier = owner_usage(url)["bob"], before.get("bob", zero)
    assert bob["eval"] - earlier["eval"] == 24 and bob["charged"] == earlier["charged"]  # counted apart, free
    assert evaluated[-1].headers["X-Detected-At"] == str(bob["charged"])  # the detector saw them


def test_a_revoked_key_is_refused_at_once_and_keys_are_stored_hashed(served, state, capsys):
    url, (folder, keys) = served.url, state
    assert post(url, keys["carol"], images(2, 9), "before").status_code == 200
    assert main(["keys", "revoke", "carol", "--state", str(folder)]) == 0
    after = post(url, keys["carol"], images(2, 9), "after")
    assert after.status_code == 401 and "revoked" in after.json()["detail"]
    assert main(["keys", "add", "dave", "--eval", "--state", str(folder)]) == 0
    dave = capsys.readouterr().out.strip().splitlines()[-1]
    assert httpx.get(f"{url}/whoami", headers={"Authorization": f"Bearer {dave}"}).json() == {
        "client": "dave", "eval": True, "owner": False}  # a key issued while the server runs works at once
    assert main(["keys", "add", "dave", "--state", str(folder)]) == 2
    assert "'dave' exists" in capsys.readouterr().err
    assert main(["keys", "list", "--state", str(folder)]) == 0
    listing = capsys.readouterr().out
    assert "carol" in listing and "revoked" in listing and "attack, eval" in listing
    database = (folder / "state.db").read_bytes() + b"".join(p.read_bytes() for p in folder.glob("state.db-*"))
    for key in [*keys.values(), dave]:
        assert key not in listing and key.encode() not in database


def send_large(url: str, head: bytes, total: int) -> tuple[bytes, int]:
    """Send ``head`` then up to ``total`` bytes of body on a raw socket, reading the reply meanwhile;
    (the reply's first bytes, bytes of body sent before the server stopped taking them)."""
    host, port = url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sent = [0]

    def send():
        chunk = b"\0" * MIB
        try:
            sock.sendall(head)
            while sent[0] < total:
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:  # the server closed the connection, or stopped reading (timeout)
            pass

    sender = threading.Thread(target=send)
    sender.start()
    reply = b""
    try:
        while len(reply) < 200 and (data := sock.recv(4096)):
            reply += data
    except OSError:
        pass
    sender.join(timeout=30)
    assert not sender.is_alive(), "waited 30 s for the sender of the large body to give up"
    sock.close()
    return reply, sent[0]


@pytest.mark.parametrize("how", ["honest", "lying", "chunked"])
def test_a_body_over_the_limit_is_refused_before_it_is_read(served, state, how):
    url, key, total = served.url, state[1]["alice"], 200 * MIB
    limit = httpx.get(f"{url}/health").json()["limits"]["max_body_bytes"]
    assert limit == MAX_BATCH * 64 * 4 + 4096
    head = f"POST /query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nX-Request-Id: big-{how}\r\n"
    head += {"honest": f"Content-Length: {total}\r\n", "lying": "Content-Length: 100\r\n",
             "chunked": "Transfer-Encoding: chunked\r\n"}[how] + "\r\n"
    if how == "chunked":
        head += f"{MIB:x}\r\n"  # chunks of 1 MiB, of which the server must read at most one
    peak = peak_rss_mib(served.proc.pid)
    reply, sent = send_large(url, head.encode(), total)
    status = {"honest": b" 413 ", "lying": b" 400 ", "chunked": b" 413 "}[how]
    assert status in reply.split(b"\r\n")[0], reply[:200]
    assert peak_rss_mib(served.proc.pid) - peak < 20, f"the server's memory grew by more than 20 MiB ({sent} sent)"
    assert httpx.get(f"{url}/health").status_code == 200


def test_clients_that_stall_are_dropped(served):
    host, port = served.url.split("//")[1].split(":")
    stalls = {"nothing": b"", "mid-headers": b"POST /query HTTP/1.1\r\nHost: x\r\nX-Req",
              "mid-body": b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789"}
    oversized = socket.create_connection((host, int(port)), timeout=10)  # headers beyond max_header_bytes
    oversized.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 32768)
    assert oversized.recv(4096).startswith(b"HTTP/1.1 400 ")
    oversized.close()
    sockets = {}
    for name, sent in stalls.items():
        for i in range(5):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(sent)
            sockets[name, i] = sock
    for (name, _), sock in sockets.items():
        start, reply = time.monotonic(), b""
        while chunk := sock.recv(4096):  # until the server closes the connection (timeout: 10 s)
            reply += chunk
        assert time.monotonic() - start < 8, f"a connection that stalled {name} was kept"
        assert (b" 408 " in reply) == (name == "mid-body"), reply
        sock.close()


@pytest.mark.parametrize("scale, status", [(3e38, 400), (-3e38, 400), (1e4, 200), (-1e4, 200)])
def test_finite_out_of_range_pixels_get_a_400_never_a_500(served, state, scale, status):
    answer = post(served.url, state[1]["bob"], images(4, 3, scale), f"huge-{scale}")
    assert answer.status_code == status, answer.text
    if status == 200:
        assert np.isfinite(decode("probs", answer.content)).all()
    else:
        assert "±10000" in answer.json()["detail"]
    assert httpx.get(f"{served.url}/health").status_code == 200


def test_retry_after_of_inf_1e9_negative_and_nan_is_handled_within_the_maximum_wait(served, state, monkeypatch):
    monkeypatch.setenv("RA_KEY", state[1]["ra"])
    victim = RemoteVictim(served.url, api_key_env="RA_KEY", max_wait=0.5, backoff=0.02, max_backoff=0.05)
    start = time.monotonic()
    answer = victim(torch.rand(2, 1, 8, 8))
    waited = time.monotonic() - start
    assert answer.shape == (2, 10) and victim.ledger()["retries"] == 4
    assert 0.5 <= waited < 0.5 + 3 * 0.05 + 2.0  # 1e9 cut to max_wait; inf, -5 and NaN: the backoff
    for value in ("inf", "-inf", "nan", "-5", "garbage", None):
        assert 0 < victim.retry_after(value, 0) <= 0.05
    assert victim.retry_after("1e9", 0) == 0.5 and victim.retry_after("0.2", 0) == 0.2
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))
    assert victim.retry_after(date, 0) == 0.5
    assert math.isclose(victim.retry_after("0", 0), 0.0)


def test_no_wait_after_the_last_attempt(served, state, monkeypatch):
    monkeypatch.setenv("LAST_KEY", state[1]["last"])
    victim = RemoteVictim(served.url, api_key_env="LAST_KEY", retries=1, max_wait=2.0)
    start = time.monotonic()
    with pytest.raises(RemoteUnavailableError, match="after 2 attempts .*429"):
        victim(torch.zeros(1, 1, 8, 8))
    assert 2.0 <= time.monotonic() - start < 3.5  # one wait of max_wait between the two, none after (4 s)
    assert owner_usage(served.url)["last"]["charged"] == 0


def test_concurrent_clients_are_charged_what_they_were_answered(served, state):
    url, keys = served.url, state[1]
    before = owner_usage(url)
    results = {}

    def client(name: str):
        codes = [post(url, keys[name], images(4, 1000 + i), f"{name}-conc-{i}").status_code for i in range(10)]
        results[name] = codes

    threads = [threading.Thread(target=client, args=(name,)) for name in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    wait_until(lambda: len(results) == 2, 1, "both clients' threads to finish")
    after = owner_usage(url)
    for name in ("alice", "bob"):
        assert results[name] == [200] * 10
        assert after[name]["charged"] - before[name]["charged"] == 40
