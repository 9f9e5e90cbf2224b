"""``knockoff evaluate``: score a run's knockoff against its victim (see
:mod:`knockoff_env.durability.run_dir` for the run directory's files)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from knockoff_env.durability.checkpoint import load_tensors
from knockoff_env.durability.run_dir import config_path_of, load_run


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="score a run's knockoff against its victim",
                              description="Top-1 accuracy, ×victim, agreement and seen/unseen per-class "
                                          "accuracy of a knockoff of RUN_DIR on the victim's test set, "
                                          "written to RUN_DIR/evaluation_<model file stem>.json.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--model", type=Path, help="state dict (default: RUN_DIR/knockoff_retrained.pt if it "
                                              "exists, else RUN_DIR/knockoff.pt)")
    p.set_defaults(func=run)


def run(args) -> None:
    run_dir = config_path_of(args.run_dir).parent
    path = args.model or next((p for p in (run_dir / "knockoff_retrained.pt", run_dir / "knockoff.pt")
                               if p.exists()), run_dir / "knockoff.pt")
    if not path.exists():
        raise FileNotFoundError(f"knockoff weights {path} not found; give --model PATH or run "
                                f"`knockoff retrain {run_dir}` first")
    _, env = load_run(run_dir)
    model = env.unwrapped.knockoff.model
    state = load_tensors(path, "a state dict of this run's knockoff", "give --model a file written by knockoff "
                         "attack or knockoff retrain")
    try:
        model.load_state_dict(state)
    except Exception as err:  # noqa: BLE001 - mismatched weights are one user error
        raise ValueError(f"{path} is not a state dict of this run's knockoff: {err}") from err
    report(run_dir, path, env.unwrapped.evaluate(model))


def report(run_dir: Path, model_path: Path, evaluation: dict) -> None:
    """Print an evaluation and write it to ``RUN_DIR/evaluation_<model file stem>.json``."""
    out = run_dir / f"evaluation_{model_path.stem}.json"
    out.write_text(json.dumps({"model": str(model_path), **evaluation}, indent=1) + "\n")
    seen, unseen = (("n/a" if evaluation[k] is None else f"{evaluation[k]:.4f}")
                    for k in ("seen_class_accuracy", "unseen_class_accuracy"))
    print(f"{model_path.name}: knockoff accuracy {evaluation['knockoff_accuracy']:.4f} "
          f"({evaluation['times_victim']:.2f}× victim {evaluation['victim_accuracy']:.4f}), "
          f"agreement {evaluation['agreement']:.4f}; per-class accuracy seen {seen} "
          f"({evaluation['seen_classes']} classes), unseen {unseen} ({evaluation['unseen_classes']} classes) -> {out}")
