"""The ``knockoff`` subcommands for worlds: ``train-victim``, ``build-hierarchy``, ``retrain``, ``evaluate``.

A run directory (RUN_DIR), as the attack runner writes it:

* ``config.json``: ``{"env_id": str, "env_kwargs": {...}, "agent": str, "seed": int, "budget": int}``
* ``transfer_set.npz``: the transfer set (:meth:`knockoff_env.TransferSet.save`)
* ``knockoff.pt``: the online knockoff's state dict

``retrain`` rebuilds the env from the config, trains a fresh knockoff on the transfer set
(the paper's offline phase), saves ``knockoff_retrained.pt`` and evaluates it; ``evaluate``
scores a saved knockoff. Evaluations are printed and written to
``evaluation_<model file stem>.json`` in RUN_DIR.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import torch

from .architectures import ARCHS, RESNETS
from .checkpoint import load_tensors
from .data import VICTIM_DATASETS
from .evaluation import evaluation_report
from .hierarchy import CLUSTERED, CLUSTERS, build_hierarchy
from .knockoff import predict
from .transfer_set import TransferSet
from .victim_training import train_victim

RUN_KEYS = ("env_id", "env_kwargs", "seed")


def add_world_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the world subcommands to the ``knockoff`` parser's ``subparsers``; each sets ``func``,
    which runs the command from the parsed ``args``, prints its result and returns None."""
    p = subparsers.add_parser("train-victim", help="train a world's victim with the paper's recipe",
                              description="Train the victim F_V of DATASET (paper recipe: SGD, lr 0.1; "
                                          "Diabetic5 lr 0.01 with class-weighted loss) and save its best "
                                          "epoch as OUT/checkpoint.pt.")
    p.add_argument("dataset", type=str.lower, choices=VICTIM_DATASETS)
    _data_root(p)
    p.add_argument("--out", help="output folder (default: DATA_ROOT/victims/DATASET, where worlds look)")
    p.add_argument("--arch", choices=ARCHS, help="default: resnet34 (paper), lenet (MNIST), resnet18_cifar (CIFAR)")
    p.add_argument("--pretrained", help="imagenet | none | PATH of a state dict (default: imagenet for the "
                                        "paper's datasets, none for MNIST/CIFAR)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, help="crop size for the paper's datasets (default 224)")
    p.add_argument("--lr", type=float, help="default 0.1 (Diabetic5: 0.01)")
    p.add_argument("--momentum", type=float, default=0.5)
    p.add_argument("--step-size", type=int, default=60, help="epochs between ×gamma learning-rate decays")
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST/CIFAR")
    _common(p)
    p.set_defaults(func=run_train_victim)

    p = subparsers.add_parser("build-hierarchy", help="cluster a query set's labels into coarse nodes",
                              description="Cluster the per-label mean ResNet features of a query set into "
                                          "coarse nodes (agglomerative, as the paper's ILSVRC hierarchy) and "
                                          "cache them as JSON.")
    p.add_argument("dataset", type=str.lower, choices=tuple(CLUSTERED))
    _data_root(p)
    p.add_argument("--clusters", type=int, default=CLUSTERS)
    p.add_argument("--out", help="JSON file (default: DATA_ROOT/hierarchies/DATASET-CLUSTERS.json, where worlds look)")
    p.add_argument("--arch", choices=RESNETS, default="resnet50", help="feature extractor (2048-d for resnet50)")
    p.add_argument("--pretrained", default="imagenet", help="imagenet | none | PATH of a state dict")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--per-class", type=int, help="images averaged per label (default: all)")
    p.add_argument("--batch-size", type=int, default=64)
    _common(p)
    p.set_defaults(func=run_build_hierarchy)

    p = subparsers.add_parser("retrain", help="offline phase: retrain a run's knockoff on its transfer set",
                              description="Train a fresh knockoff on RUN_DIR's transfer set with the run's "
                                          "recipe (or --recipe), holding --holdout of it out to keep the best "
                                          "epoch; save RUN_DIR/knockoff_retrained.pt, RUN_DIR/retrain.json and "
                                          "evaluate it.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--epochs", type=int, help="default: the recipe's (paper 100, scratch 30)")
    p.add_argument("--recipe", help="auto | paper | scratch (default: the run's)")
    p.add_argument("--holdout", type=float, default=0.1,
                   help="fraction of the transfer set held out to judge each epoch (default 0.1)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes for a folder-dataset transfer set")
    p.set_defaults(func=run_retrain)

    p = subparsers.add_parser("evaluate", help="score a run's knockoff against its victim",
                              description="Top-1 accuracy, ×victim, agreement and seen/unseen per-class "
                                          "accuracy of a knockoff of RUN_DIR on the victim's test set.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--model", type=Path, help="state dict (default: RUN_DIR/knockoff_retrained.pt if it "
                                              "exists, else RUN_DIR/knockoff.pt)")
    p.set_defaults(func=run_evaluate)


def _data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="folder holding the datasets (default: $KNOCKOFF_DATA)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", dest="progress", action="store_false")


def run_train_victim(args) -> None:
    result = train_victim(args.dataset, args.data_root, args.out, arch=args.arch, pretrained=args.pretrained,
                          epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size,
                          lr=args.lr, momentum=args.momentum, step_size=args.step_size, gamma=args.gamma,
                          workers=args.workers, device=args.device, seed=args.seed, download=args.download,
                          progress=args.progress)
    print(f"victim {result['dataset']} ({result['arch']}): test accuracy {result['accuracy']:.4f} "
          f"at epoch {result['epoch']} -> {result['path']}")


def run_build_hierarchy(args) -> None:
    path = build_hierarchy(args.dataset, args.data_root, clusters=args.clusters, out=args.out, arch=args.arch,
                           pretrained=args.pretrained, image_size=args.image_size, per_class=args.per_class,
                           batch_size=args.batch_size, workers=args.workers, device=args.device,
                           progress=args.progress)
    print(f"hierarchy of {args.dataset} with {args.clusters} coarse nodes -> {path}")


def load_run(run_dir: str | Path) -> tuple[dict, gym.Env]:
    """(config, env with the run's transfer set loaded) for a RUN_DIR."""
    config_path = _config_path(run_dir)
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from err
    missing = [k for k in RUN_KEYS if not isinstance(config, dict) or k not in config]
    if missing or not isinstance(config["env_kwargs"], dict):
        raise ValueError(f"{config_path} needs {list(RUN_KEYS)} with env_kwargs an object; missing {missing}")
    transfer_path = Path(run_dir) / "transfer_set.npz"
    if not transfer_path.exists():
        raise FileNotFoundError(f"{transfer_path} not found; the run saved no transfer set")
    transfer_set = TransferSet.load(transfer_path)
    env = gym.make(config["env_id"], **config["env_kwargs"])
    world = env.unwrapped
    indices, outputs = transfer_set.view()
    outside = len(indices) > 0 and (indices.min() < 0 or indices.max() >= len(world.query_set))
    if outputs.shape[1] != world.num_classes or outside:
        raise ValueError(f"{transfer_path} does not fit {config['env_id']} with these env_kwargs: "
                         f"{outputs.shape[1]} classes for a {world.num_classes}-class victim, or indices "
                         f"outside its {len(world.query_set)}-image query set")
    world.transfer_set = transfer_set
    return config, env


def _config_path(run_dir: str | Path) -> Path:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; RUN_DIR must be a folder written by `knockoff attack`")
    return path


def evaluate_model(env: gym.Env, model: torch.nn.Module) -> dict:
    """:func:`~knockoff_env.evaluation.evaluation_report` of ``model`` on the env's eval set."""
    world = env.unwrapped
    if world.eval_set is None:
        raise ValueError("this env has no eval_set to evaluate on")
    data, labels = world.eval_set
    data = (data, torch.from_numpy(labels)) if isinstance(data, torch.Tensor) else data
    knockoff_pred = predict(model, data, world.device)
    victim_pred = predict(world.victim.evaluation_model(), data, world.device)
    return evaluation_report(knockoff_pred, victim_pred, labels, world.transfer_set.view()[1])


def _report(run_dir: Path, model_path: Path, report: dict) -> None:
    out = run_dir / f"evaluation_{model_path.stem}.json"
    out.write_text(json.dumps({"model": str(model_path), **report}, indent=1) + "\n")
    seen = "n/a" if report["seen_class_accuracy"] is None else f"{report['seen_class_accuracy']:.4f}"
    unseen = "n/a" if report["unseen_class_accuracy"] is None else f"{report['unseen_class_accuracy']:.4f}"
    print(f"{model_path.name}: knockoff accuracy {report['knockoff_accuracy']:.4f} "
          f"({report['times_victim']:.2f}× victim {report['victim_accuracy']:.4f}), "
          f"agreement {report['agreement']:.4f}; per-class accuracy seen {seen} "
          f"({report['seen_classes']} classes), unseen {unseen} ({report['unseen_classes']} classes) -> {out}")


def run_retrain(args) -> None:
    config, env = load_run(args.run_dir)
    if len(env.unwrapped.transfer_set) == 0:
        raise ValueError(f"the transfer set of {args.run_dir} is empty; there is nothing to retrain on")
    torch.manual_seed(int(config["seed"]))
    fit = env.unwrapped.fit(args.epochs, recipe=args.recipe, holdout=args.holdout, seed=int(config["seed"]),
                            progress=True, workers=args.workers, warn=False)
    path = Path(args.run_dir) / "knockoff_retrained.pt"
    torch.save({k: v.detach().cpu() for k, v in fit.model.state_dict().items()}, path)
    (Path(args.run_dir) / "retrain.json").write_text(json.dumps(fit.summary(), indent=1) + "\n")
    print(f"recipe {fit.recipe.name}, {fit.epochs} epochs: held-out agreement {fit.heldout_agreement:.4f} "
          f"(attacker's estimate, {fit.heldout_size} queries; chance {fit.chance:.2f}; "
          f"best epoch {fit.best_epoch})")
    if fit.near_chance:
        print(f"WARNING: NEAR CHANCE: {fit.advice}")
    if env.unwrapped.eval_set is not None:
        _report(Path(args.run_dir), path, evaluate_model(env, fit.model))


def run_evaluate(args) -> None:
    run_dir = _config_path(args.run_dir).parent
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
    _report(run_dir, path, evaluate_model(env, model))
