"""Architectures of the paper's victims and knockoffs, and where their initial weights come from.

* ``resnet18`` … ``resnet152``: torchvision ResNets (the paper: ResNet-34).
* ``resnet18_cifar``: ResNet-18 with a 3×3 stride-1 stem and no max-pool, for 32 px inputs
  (supplement D.1, CIFAR victims).
* ``lenet``: the LeNet-like MNIST net of supplement D.1 (two convolutions, two dense layers).

``pretrained``: ``"none"``/``"scratch"`` (random init), ``"imagenet"`` (torchvision's
ImageNet weights, read from the torch hub cache — never downloaded here) or a path to a
state dict (or a checkpoint holding one under ``"state_dict"``). Pretrained weights are
copied wherever name and shape match, so the classifier of a model pretrained on another
task (e.g. the query set's, supplement D.1) is left freshly initialised.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models

from ..durability.checkpoint import load_tensors

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
ARCHS = (*RESNETS, "resnet18_cifar", "lenet")
RANDOM_INIT = ("none", "scratch")


class LeNet(nn.Module):
    """LeNet-like classifier for 1×28×28 inputs (the MNIST victim of supplement D.1)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _resnet18_cifar(num_classes: int) -> nn.Module:
    model = models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_arch(arch: str, num_classes: int, pretrained: str | Path = "none") -> nn.Module:
    """A classifier ``arch`` with ``num_classes`` outputs, initialised from ``pretrained``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHS}")
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
    if arch == "lenet":
        model = LeNet(num_classes)
    elif arch == "resnet18_cifar":
        model = _resnet18_cifar(num_classes)
    else:
        model = getattr(models, arch)(num_classes=num_classes)
    return load_pretrained(model, arch, pretrained)


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision keeps the ImageNet weights of ``arch`` once downloaded."""
    base = "resnet18" if arch == "resnet18_cifar" else arch
    if base not in RESNETS:
        raise ValueError(f"no ImageNet weights exist for {arch!r}; use pretrained='none' or a PATH")
    url = models.get_model_weights(base).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def pretrained_state(arch: str, pretrained: str | Path) -> dict[str, torch.Tensor] | None:
    """The state dict ``pretrained`` names (None for a random init); missing files are clear errors."""
    if str(pretrained) in RANDOM_INIT:
        return None
    if str(pretrained) == "imagenet":
        path = imagenet_weights_path(arch)
        if not path.exists():
            url = models.get_model_weights("resnet18" if arch == "resnet18_cifar" else arch).IMAGENET1K_V1.url
            raise FileNotFoundError(
                f"ImageNet weights for {arch} not found at {path}. Download {url} to that path "
                "(torchvision's cache; set $TORCH_HOME to move it), or pass a state-dict file with "
                "--pretrained PATH (knockoff_init=PATH), or train from scratch with --pretrained none.")
    else:
        path = Path(pretrained).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"pretrained weights {path} not found; give 'imagenet', 'none' or "
                                    "the path of a saved state dict")
    state = load_tensors(path, "a state dict of weights", "give 'imagenet', 'none' or the path of a state dict "
                         "saved with torch.save(model.state_dict(), PATH)")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    return state


def load_pretrained(model: nn.Module, arch: str, pretrained: str | Path) -> nn.Module:
    """Copy every tensor of ``pretrained`` whose name and shape match into ``model``."""
    state = pretrained_state(arch, pretrained)
    if state is None:
        return model
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"no parameter of {pretrained} matches a {arch}: it was saved from another architecture")
    model.load_state_dict(matched, strict=False)
    return model


def feature_extractor(arch: str, pretrained: str | Path = "imagenet") -> nn.Module:
    """A ResNet without its classifier: images → penultimate-layer features."""
    if arch not in RESNETS:
        raise ValueError(f"features come from a torchvision ResNet; choose one of {RESNETS}")
    model = build_arch(arch, 1000, pretrained)
    model.fc = nn.Identity()
    return model.eval()
