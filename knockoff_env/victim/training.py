"""Training the victim F_V of a world with the paper's recipe, and the victim checkpoint format.

Recipe (supplement B.4): SGD with lr 0.1, except Diabetic5: lr 0.01 and a class-weighted
loss w_c = n_min / n_c (n_c images of class c). The paper states no more than that; the
rest follows its knockoff schedule: momentum 0.5, ×0.1 every 60 epochs, 100 epochs, batch 64.
The paper's victims (ResNet-34) start from ImageNet weights; the D.1 small-scale victims
(LeNet-like for MNIST, ResNet-18 for CIFAR) from a random init. Training augments with
random crops and flips; the test split is evaluated after every epoch and the best epoch
is kept.

Checkpoint: ``<out>/checkpoint.pt``, a dict of plain values that loads with
``torch.load(weights_only=True)``: ``state_dict``, ``arch``, ``num_classes``,
``class_names``, ``accuracy`` (test top-1), ``dataset``, ``image_size``, ``epoch``, and
the recipe used: ``pretrained``, ``lr``, ``class_weights`` (None for an unweighted loss).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.common import resolve_data_root
from ..data.query_set import dataset_labels
from ..data.transforms import IMAGE_SIZE
from ..data.victims import PAPER_VICTIMS, VICTIM_DATASETS, victim_data
from ..devices import resolve_device
from ..durability.checkpoint import load_tensors
from ..models.architectures import build_arch

CHECKPOINT = "checkpoint.pt"
DEFAULT_ARCH = {**{name: "resnet34" for name in PAPER_VICTIMS},
                "mnist": "lenet", "cifar10": "resnet18_cifar", "cifar100": "resnet18_cifar"}
LEARNING_RATE = {"diabetic5": 0.01}     # every other victim: 0.1
WEIGHTED_LOSS = ("diabetic5",)
METADATA = ("arch", "num_classes", "class_names", "accuracy", "dataset", "image_size", "epoch")


def default_pretrained(dataset: str) -> str:
    """ImageNet init for the paper's victims, random init for the small-scale ones (D.1)."""
    return "imagenet" if dataset in PAPER_VICTIMS else "none"


def default_checkpoint(dataset: str, data_root=None) -> Path:
    """Where a world looks for its victim: ``<data_root>/victims/<dataset>/checkpoint.pt``."""
    return resolve_data_root(data_root) / "victims" / dataset / CHECKPOINT


def class_weights(targets: np.ndarray, num_classes: int) -> torch.Tensor:
    """w_c = n_min / n_c, the paper's weights against Diabetic5's imbalance."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(f"classes {np.flatnonzero(counts == 0).tolist()} have no training image; "
                         "class weights n_min / n_c need every class")
    return torch.tensor(counts.min() / counts, dtype=torch.float32)


def save_victim(path: str | Path, model: nn.Module, **metadata) -> Path:
    """Write a victim checkpoint (see the module docstring) atomically."""
    missing = [k for k in METADATA if k not in metadata]
    if missing:
        raise ValueError(f"victim checkpoint metadata lacks {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": state, **metadata}, tmp)
    tmp.replace(path)
    return path


def load_victim(path: str | Path, dataset: str | None = None, data_root=None) -> tuple[nn.Module, dict]:
    """(victim in eval mode, metadata) from a checkpoint written by :func:`save_victim`.

    A missing file is an error naming the ``knockoff train-victim`` command that makes it.
    """
    path = Path(path).expanduser()
    if not path.exists():
        name = dataset or "DATASET"
        root = data_root if data_root is not None else "DATA_ROOT"
        raise FileNotFoundError(
            f"victim checkpoint {path} not found; train the victim with\n"
            f"  knockoff train-victim {name} --data-root {root} --out {path.parent}\n"
            "or pass victim_checkpoint=PATH to a checkpoint it wrote")
    checkpoint = load_tensors(path, "a victim checkpoint", "retrain the victim with knockoff train-victim, or "
                              "pass victim_checkpoint=PATH to a checkpoint it wrote")
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint \
            or any(k not in checkpoint for k in METADATA):
        raise ValueError(f"{path} is not a victim checkpoint: it needs state_dict and {list(METADATA)}; "
                         "write it with knockoff train-victim")
    if dataset is not None and checkpoint["dataset"] != dataset:
        raise ValueError(f"{path} is a {checkpoint['dataset']} victim, not a {dataset} one")
    model = build_arch(checkpoint["arch"], checkpoint["num_classes"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), {k: v for k, v in checkpoint.items() if k != "state_dict"}


@torch.inference_mode()
def accuracy(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Top-1 accuracy of ``model`` over ``loader``."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        total += len(y)
    return correct / max(total, 1)


def train_victim(dataset: str, data_root=None, out: str | Path | None = None, *, arch: str | None = None,
                 pretrained: str | Path | None = None, epochs: int = 100, batch_size: int = 64,
                 image_size: int | None = None, lr: float | None = None, momentum: float = 0.5,
                 step_size: int = 60, gamma: float = 0.1, workers: int = 0, device: str = "auto",
                 seed: int = 0, download: bool = False, progress: bool = True) -> dict:
    """Train the victim of ``dataset`` and keep its best epoch; returns the checkpoint's metadata
    plus ``path``. ``out`` defaults to ``<data_root>/victims/<dataset>/``, where worlds look."""
    if dataset not in VICTIM_DATASETS:
        raise ValueError(f"unknown victim dataset {dataset!r}; choose one of {VICTIM_DATASETS}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("step_size", step_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if dataset in PAPER_VICTIMS:
        image_size = image_size or IMAGE_SIZE
    elif image_size is not None:
        raise ValueError(f"image_size applies to the paper's datasets; {dataset} keeps its native size")
    arch = arch or DEFAULT_ARCH[dataset]
    pretrained = default_pretrained(dataset) if pretrained is None else pretrained
    lr = LEARNING_RATE.get(dataset, 0.1) if lr is None else lr
    path = Path(out).expanduser() / CHECKPOINT if out is not None else default_checkpoint(dataset, data_root)
    device = resolve_device(device)
    torch.manual_seed(seed)

    options = dict(image_size=image_size, download=download)
    train = victim_data(dataset, "train", data_root, augment=True, **options)
    test = victim_data(dataset, "test", data_root, **options)
    class_names = [str(c) for c in train.classes]
    model = build_arch(arch, len(class_names), pretrained).to(device)
    weight = class_weights(dataset_labels(train), len(class_names)).to(device) if dataset in WEIGHTED_LOSS else None
    criterion = nn.CrossEntropyLoss(weight=weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train, batch_size, shuffle=True, num_workers=workers, generator=generator)
    test_loader = DataLoader(test, batch_size, num_workers=workers)

    best = {"accuracy": -1.0}
    bar = tqdm(range(int(epochs)), desc=f"train-victim {dataset}", disable=not progress)
    for epoch in bar:
        model.train()
        for x, y in tqdm(train_loader, desc=f"epoch {epoch + 1}", leave=False, disable=not progress):
            loss = criterion(model(x.to(device)), y.to(device))
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"the training loss became {loss.item()} at epoch {epoch + 1}; "
                                         "lower the learning rate (--lr)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
        test_accuracy = accuracy(model, test_loader, device)
        if test_accuracy > best["accuracy"]:
            best = dict(arch=arch, num_classes=len(class_names), class_names=class_names,
                        accuracy=test_accuracy, dataset=dataset, image_size=image_size, epoch=epoch + 1,
                        pretrained=str(pretrained), lr=lr,
                        class_weights=None if weight is None else weight.cpu().tolist())
            save_victim(path, model, **best)
        bar.set_postfix(loss=f"{loss.item():.3f}", test_accuracy=f"{test_accuracy:.3f}",
                        best=f"{best['accuracy']:.3f}")
    return {**best, "path": str(path)}
