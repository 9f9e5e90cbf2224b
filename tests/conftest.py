"""Shared fixtures: a tiny synthetic world and a per-session cache for the digits victim."""
import os
import signal

import pytest
import torch
from hypothesis import settings
from torch import nn

torch.set_num_threads(1)
# Ctrl-C raises KeyboardInterrupt here and in the subprocesses the tests start, even when the suite
# itself was started with SIGINT ignored (a background job of a non-interactive shell: `make test &`),
# which Python would otherwise keep, and with it every interrupt test would fail.
signal.signal(signal.SIGINT, signal.default_int_handler)
# CI replays the same property cases every run; locally hypothesis keeps exploring new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True, scope="session")
def _digits_cache(tmp_path_factory):
    """Train the digits victim once per test session, in a temporary cache; the default run
    directories of `knockoff attack` go to a temporary folder too, not into the repository."""
    mp = pytest.MonkeyPatch()
    mp.setenv("KNOCKOFF_CACHE", str(tmp_path_factory.mktemp("knockoff_cache")))
    mp.setenv("KNOCKOFF_RUNS", str(tmp_path_factory.mktemp("knockoff_runs")))
    # the CLI and server subprocesses use one torch thread, as this process does: on a machine busy
    # with other work, two threads per process wait on each other (a 400-query attack took minutes)
    mp.setenv("OMP_NUM_THREADS", "1")
    yield
    mp.undo()


class LinearNet(nn.Module):
    def __init__(self, dim: int = 6, classes: int = 3):
        super().__init__()
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def tiny_world(per_label: int = 5, labels=(0, 1, 2, 3, 4, 5), dim: int = 6, classes: int = 3, seed: int = 0):
    """(images, labels) with ``per_label`` images of each label, plus a victim and a hierarchy."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([z for z in labels for _ in range(per_label)])
    x = torch.randn(len(y), dim, generator=g) + y[:, None].float()
    torch.manual_seed(seed + 1000)  # unlike any knockoff seeded in the tests
    victim = LinearNet(dim, classes)
    hierarchy = {"a": [0, 1, 2], "b": [3, 4], "c": [5]}
    return (x, y), victim, hierarchy


@pytest.fixture
def world():
    return tiny_world()


@pytest.fixture
def make_env():
    """Factory for a tiny KnockoffEnv; keyword arguments override the defaults."""
    from knockoff_env import KnockoffEnv

    def make(**kwargs):
        (x, y), victim, hierarchy = tiny_world()
        options = dict(victim=victim, query_set=(x, y), hierarchy=hierarchy, knockoff=lambda: LinearNet(),
                       eval_set=(x, y % 3), budget=20, device="cpu")
        options.update(kwargs)
        return KnockoffEnv(**options)

    return make
