"""`knockoff serve` in a subprocess for tests: started with a deadline, its log drained, stopped for sure."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_DEADLINE = 180.0  # seconds for the server to import, load its victim and print its address


def wait_until(predicate, seconds: float, what: str, every: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"waited {seconds:g} s for {what}")


@dataclass
class Served:
    """A running `knockoff serve` process: its URL and the lines it printed."""

    proc: subprocess.Popen
    url: str
    log: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL, as a crash would; returns once the process is gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(*args: str, env: dict | None = None) -> Served:
    """``python -m agents.cli serve --port 0 ARGS`` (a later ``--port`` wins), once it printed its address."""
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "serve", "--port", "0", *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: queue.Queue = queue.Queue()
    log: list[str] = []

    def drain():
        for line in proc.stdout:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + START_DEADLINE
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            raise AssertionError(f"waited {START_DEADLINE:g} s for `knockoff serve` to print its address: "
                                 f"{''.join(log)}") from None
        if line is None:
            raise AssertionError(f"`knockoff serve` exited ({proc.wait()}) before serving: {''.join(log)}")
        if "http://" in line:
            return Served(proc, line.split()[-1], log)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"/proc/{pid}/status has no VmHWM line")


def issue_keys(state: Path, rights: dict[str, bool]) -> dict[str, str]:
    """One API key per client name in the state folder ``state``; ``rights[name]``: may it evaluate."""
    from knockoff_env.serve import StateStore, issue_key

    store = StateStore(state)
    keys = {name: issue_key(store, name, eval=evaluates) for name, evaluates in rights.items()}
    store.close()
    return keys
