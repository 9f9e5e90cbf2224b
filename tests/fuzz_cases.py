"""Bad-input scenarios shared by the property tests (test_clear_errors.py, test_cli_errors.py) and
the census that counts them (``python tests/error_census.py``).

The contract: every input either works or ends in *the project's own clear error*, defined as
an exception that is a ``ValueError``, ``TypeError`` or ``OSError`` (the ``KnockoffError``
family subclasses these) raised by a frame of the project's own code (``knockoff_env/`` or
``agents/``), not from inside torch, Gymnasium, numpy or the standard library. For the CLI:
exit code 0 or 2, no traceback on stderr, and an error is one ``knockoff <command>: error:`` line.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from conftest import LinearNet, tiny_world

ROOT = Path(__file__).resolve().parents[1]
PROJECT_DIRS = tuple(str(ROOT / d) + os.sep for d in ("knockoff_env", "agents"))
CLEAR_TYPES = (ValueError, TypeError, OSError)


def raised_by_project(err: BaseException) -> bool:
    """Whether ``err`` was raised by the project's code (the innermost frame is ours)."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(PROJECT_DIRS)


def is_clear(err: BaseException) -> bool:
    return isinstance(err, CLEAR_TYPES) and raised_by_project(err) and bool(str(err).strip())


def outcome(run, value) -> str:
    """``"ok"``, ``"clear"`` or ``"unclear: <type> at <file>:<line>"`` for ``run(value)``."""
    try:
        run(value)
    except Exception as err:  # noqa: BLE001 - classifying every failure is the point
        if is_clear(err):
            return "clear"
        frame = traceback.extract_tb(err.__traceback__)[-1]
        return f"unclear: {type(err).__name__} at {Path(frame.filename).name}:{frame.lineno}: {str(err)[:120]}"
    return "ok"


# --- the env, on a tiny world ---------------------------------------------------------
def make_env(**kwargs):
    from knockoff_env import KnockoffEnv
    (x, y), victim, hierarchy = tiny_world()
    options = dict(victim=victim, query_set=(x, y), hierarchy=hierarchy, knockoff=lambda: LinearNet(),
                   eval_set=(x, y % 3), budget=12, device="cpu")
    options.update(kwargs)
    return KnockoffEnv(**options)


def play(env, steps: int = 2, evaluate: bool = True) -> None:
    env.reset(seed=0)
    for _ in range(steps):
        if env.step(env.action_space.sample())[2]:
            break
    if evaluate and env.eval_set is not None:
        env.evaluate()


SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=True, width=32),
                   st.text(max_size=3), st.sampled_from(["all", "probs", "flat", "cpu", "cuda", "cuda:7",
                                                          "bogus", "top_k", "label"]))
OPTIONS = ("budget", "queries_per_step", "diversity_window", "knockoff_lr", "knockoff_momentum", "top_k",
           "decimals", "output", "action_mode", "reward", "device", "num_classes", "label_names",
           "fetch_workers", "render_mode", "train_online")
constructor_options = st.dictionaries(st.sampled_from(OPTIONS), SCALAR, min_size=1, max_size=3)


def run_constructor_options(options: dict) -> None:
    play(make_env(**options))


def _victim_answer(kind: str, width: int, value: float):
    def victim(images):
        n = len(images)
        if kind == "rows":
            return torch.full((n, width), value)
        if kind == "fewer rows":
            return torch.full((max(n - 1, 0), width), value)
        if kind == "flat":
            return torch.full((n * width,), value)
        if kind == "numpy":
            return np.full((n, width), value)
        if kind == "list":
            return [[value] * width for _ in range(n)]
        if kind == "none":
            return None
        if kind == "text":
            return "cat"
        if kind == "3-d":
            return torch.full((n, width, 1), value)
        raise AssertionError(kind)
    return victim


victim_outputs = st.tuples(st.sampled_from(["rows", "fewer rows", "flat", "numpy", "list", "none", "text", "3-d"]),
                           st.integers(0, 5), st.sampled_from([1 / 3, 0.25, 0.5, 1.0, -1.0, float("nan"),
                                                               float("inf"), 0.0, 2.0]),
                           st.sampled_from([None, 3, 4]))


def run_victim_output(case) -> None:
    kind, width, value, num_classes = case
    play(make_env(victim=_victim_answer(kind, width, value), num_classes=num_classes))


class WidthNet(nn.Module):
    """A knockoff for ``dim``-wide inputs with ``classes`` outputs (wrong on purpose in the fuzz)."""

    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


knockoffs = st.one_of(st.tuples(st.integers(1, 8), st.integers(1, 6)),
                      st.sampled_from(["not a module", "factory of text", None, 3]))


def run_knockoff(case) -> None:
    if isinstance(case, tuple):
        dim, classes = case
        knockoff = lambda: WidthNet(dim, classes)  # noqa: E731
    elif case == "factory of text":
        knockoff = lambda: "text"  # noqa: E731
    else:
        knockoff = case
    play(make_env(knockoff=knockoff))


eval_sets = st.one_of(
    st.tuples(st.sampled_from([(8, 6), (8, 5), (8, 2, 3), (8, 7), (8,), (0, 6), (8, 6, 1)]),
              st.sampled_from(["float", "int", "bool"]),
              st.sampled_from([(0, 3), (0, 10), (-2, 3), (3, 5)]), st.sampled_from([8, 7, 0])),
    st.sampled_from(["text", 5, (1, 2, 3), ([1.0, 2.0], [0, 1])]))


def run_eval_set(case) -> None:
    if isinstance(case, tuple) and len(case) == 4 and isinstance(case[0], tuple):
        shape, dtype, (low, high), n_labels = case
        images = torch.rand(shape) if dtype == "float" else torch.ones(shape, dtype=getattr(torch, dtype))
        labels = torch.randint(low, high, (n_labels,))
        case = (images, labels)
    play(make_env(eval_set=case), steps=1)


LABEL = st.one_of(st.integers(-1, 8), st.floats(allow_nan=True, width=32), st.text(max_size=2), st.none())
hierarchies = st.one_of(st.dictionaries(st.text(max_size=3), st.lists(LABEL, max_size=5), max_size=4),
                        st.dictionaries(st.sampled_from("abc"), st.lists(st.integers(0, 8), min_size=1, max_size=4,
                                                                         unique=True), min_size=1, max_size=3),
                        st.permutations(range(9)).flatmap(lambda order: st.integers(6, 9).flatmap(
                            lambda n: st.integers(1, 3).map(lambda k: _split(order[:n], k)))),
                        st.sampled_from(["digits", 3, ["a", "b"], {"a": "012"}]))


def _split(labels, nodes: int) -> dict:
    """``labels`` dealt round-robin into ``nodes`` coarse nodes."""
    return {f"node{i}": list(labels[i::nodes]) for i in range(nodes) if labels[i::nodes]}


def run_hierarchy(hierarchy) -> None:
    play(make_env(hierarchy=hierarchy))


query_sets = st.one_of(
    st.tuples(st.sampled_from([(30, 6), (30, 5), (30, 2, 3), (30,), (29, 6), (0, 6)]),
              st.sampled_from(["float", "int", "double"]), st.sampled_from(["ok", "negative", "float", "few"])),
    st.sampled_from(["text", None, 5, ([], []), ([[1.0]], [0, 1])]))


def run_query_set(case) -> None:
    if isinstance(case, tuple) and len(case) == 3 and isinstance(case[0], tuple):
        shape, dtype, label_kind = case
        images = {"float": torch.rand, "double": lambda *s: torch.rand(*s, dtype=torch.float64),
                  "int": lambda *s: torch.ones(*s, dtype=torch.int64)}[dtype](*shape)
        labels = torch.arange(30) % 6
        labels = {"ok": labels, "negative": labels - 2, "float": labels.float() + 0.5, "few": labels[:10]}[label_kind]
        case = (images, labels)
    play(make_env(query_set=case, hierarchy=None))


ACTION = st.one_of(st.integers(-2, 8), st.floats(allow_nan=True, width=32), st.text(max_size=2), st.none(),
                   st.lists(st.integers(-1, 4), max_size=3), st.booleans(),
                   arrays(st.sampled_from([np.int64, np.float32]), st.integers(0, 3), elements=st.integers(-2, 8)),
                   arrays(np.bool_, st.integers(1, 2)))
actions = st.tuples(st.lists(ACTION, min_size=1, max_size=6), st.booleans())


def run_actions(case) -> None:
    actions_, flat = case
    env = make_env(action_mode="flat" if flat else "hierarchical")
    env.reset(seed=0)
    for action in actions_:
        if env.step(action)[2]:
            break


ENV_SCENARIOS = {
    "constructor options": (constructor_options, run_constructor_options),
    "victim outputs": (victim_outputs, run_victim_output),
    "knockoffs": (knockoffs, run_knockoff),
    "eval sets": (eval_sets, run_eval_set),
    "hierarchies": (hierarchies, run_hierarchy),
    "query sets": (query_sets, run_query_set),
    "actions": (actions, run_actions),
}

# inputs that are wrong even when nothing raises: counted by the census as "accepted silently"
KNOWN_BAD = {"hierarchies": lambda h: isinstance(h, dict) and any(
    isinstance(z, int) and not isinstance(z, bool) and z not in range(6) for m in h.values()
    if isinstance(m, list) for z in m)}


# --- the CLI, in-process --------------------------------------------------------------
class Paths:
    """Files the CLI fuzz points options at: a plain file, a folder, a damaged checkpoint."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="knockoff_fuzz_"))
        self.file = self.root / "a_file"
        self.file.write_text("not a folder")
        self.damaged = self.root / "damaged_run"
        self.damaged.mkdir()
        (self.damaged / "attack.json").write_text("{broken")
        (self.damaged / "config.json").write_text('{"env_id": "Knockoff-Nope-v0", "env_kwargs": {}, "seed": 0}')
        self.count = 0

    def fresh(self) -> str:
        self.count += 1
        return str(self.root / f"run{self.count}")

    def resolve(self, token: str) -> str:
        """``token`` with its ``@name`` placeholder (also inside ``KEY=@name``) replaced by a real path."""
        if "@" not in token:
            return token
        places = {"@under_file": lambda: str(self.file / "x"), "@file": lambda: str(self.file),
                  "@damaged": lambda: str(self.damaged), "@fresh": self.fresh, "@root": lambda: str(self.root),
                  "@missing": lambda: str(self.root / "missing")}
        for name, path in places.items():
            if name in token:
                return token.replace(name, path())
        return token


ENV_IDS = ["Knockoff-Digits-v0", "Knockoff-Digitz-v0", "Knockoff-digits-v0", "Knockoff-Digits-v9", "Hopper-v4",
           "CartPole-v1", "Knockoff-Caltech256-v0", "nonsense", ""]
ATTACK_OPTIONS = st.sampled_from([
    ["--env", e] for e in ENV_IDS] + [
    ["--env-arg", a] for a in ("foo=1", "budget=abc", "data_root=@missing", "queries_per_step=0",
                               "hierarchy={'a': [0]}", "victim_path=@file", "reward=[1]", "noequals")] + [
    ["--device", d] for d in ("cuda", "cuda:3", "bogus", "cpu", "mps", "auto")] + [
    ["--logdir", p] for p in ("@file", "@under_file", "@fresh")] + [
    ["--budget", b] for b in ("0", "-4", "999999", "x", "8")] + [
    ["--checkpoint-every", c] for c in ("0", "-1", "2")] + [
    ["--resume", r] for r in ("@missing", "@file", "@damaged", "@root")] + [
    ["--reward", r] for r in ("bogus", "loss", "certainty,speed", ",")] + [
    ["--output", "top_k"], ["--top-k", "0"], ["--top-k", "99"], ["--decimals", "-1"], ["--decimals", "99"],
    ["--queries-per-step", "0"], ["--eval-every", "-3"], ["--eval-every", "0"], ["--retrain-epochs", "-1"],
    ["--alpha", "nan"], ["--alpha", "-1"], ["--agent", "random"], ["--offline-only"], ["--seed", "-1"],
    ["--json", "@under_file"], ["--json", "@root"]])
OTHER_COMMANDS = st.sampled_from([
    ["retrain", "@missing"], ["retrain", "@file"], ["retrain", "@damaged"], ["evaluate", "@damaged"],
    ["evaluate", "@root", "--model", "@file"], ["train-victim", "mnist", "--data-root", "@missing"],
    ["train-victim", "caltech256", "--data-root", "@root", "--device", "cuda"],
    ["build-hierarchy", "ilsvrc", "--data-root", "@missing"], ["bogus-command"], ["attack", "--bogus-flag"], []])
cli_argvs = st.one_of(st.lists(ATTACK_OPTIONS, min_size=1, max_size=3).map(
    lambda opts: ["attack", "--quiet", "--budget", "8"] + [t for o in opts for t in o]), OTHER_COMMANDS)


def run_cli(argv: list[str], paths: Paths) -> tuple[int | str, str, str]:
    """``knockoff.cli.main(argv)`` in-process: (exit code, stdout, stderr)."""
    from agents.cli import main
    argv = [paths.resolve(t) for t in argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, (int, type(None))) else f"SystemExit({exit_.code!r})"
        except Exception as error:  # noqa: BLE001 - counted as an unclear failure
            code = f"raised {type(error).__name__}"
            traceback.print_exc(file=err)
    return 0 if code is None else code, out.getvalue(), err.getvalue()


def cli_outcome(code, stderr: str) -> str:
    """``"ok"``, ``"clear"`` (exit 2, one ``knockoff …: error:`` line, no traceback) or ``"unclear: …"``."""
    if "Traceback" in stderr:
        return f"unclear: traceback (exit {code}): {stderr.strip().splitlines()[-1][:120]}"
    if code == 0:
        return "ok"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if code == 2 and last.startswith("knockoff") and ": error: " in last:
        return "clear"
    return f"unclear: exit {code}: {last[:120]}"
