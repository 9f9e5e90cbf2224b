"""The small-scale worlds of supplement D.1: victims trained from a random init on MNIST
(LeNet-like), CIFAR10 and CIFAR100 (ResNet-18), attacked with related query sets.

Datasets are read by torchvision from ``data_root`` (else ``$KNOCKOFF_DATA``) when the env
is made; ``download=True`` lets torchvision fetch them.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from ..core.env import KnockoffEnv
from ..data import small_scale
from ..data.common import resolve_data_root
from ..data.query_set import dataset_labels
from ..models.architectures import RANDOM_INIT, build_arch
from .assembly import default_budget, resolve_hierarchy, world_victim

# victim: its query sets (D.1), the first is the default; the victim's own data (P_V) is allowed too
QUERY_SETS = {
    "mnist": ("emnist", "emnistletters", "fashionmnist", "kmnist"),
    "cifar10": ("cifar100", "tinyimagenet200"),
    "cifar100": ("cifar10", "tinyimagenet200"),
}
BUDGET = 50_000  # the largest budget D.1 reports


def make_small_scale_env(victim_dataset: str, *, query_set: str | None = None, data_root=None,
                         victim_checkpoint: str | Path | None = None, arch: str | None = None,
                         knockoff_init: str | Path = "scratch", budget: int | None = None, hierarchy=None,
                         download: bool = False, **kwargs) -> KnockoffEnv:
    """The D.1 world of ``victim_dataset``; see the registered entry points."""
    if victim_dataset not in QUERY_SETS:
        raise ValueError(f"unknown small-scale victim {victim_dataset!r}; choose one of {tuple(QUERY_SETS)}")
    allowed = (*QUERY_SETS[victim_dataset], victim_dataset)
    query_set = query_set or allowed[0]
    if query_set not in allowed:
        raise ValueError(f"query_set={query_set!r}; the {victim_dataset} world takes one of {allowed}")
    root = resolve_data_root(data_root)
    victim, meta = world_victim(victim_dataset, root, victim_checkpoint, kwargs)
    family = small_scale.FAMILY[victim_dataset]
    eval_set = small_scale.load(victim_dataset, "test", root, download=download)
    images = small_scale.load(query_set, "train", root, family=family, download=download)
    kwargs.setdefault("knockoff_pretrained", str(knockoff_init) not in RANDOM_INIT)  # picks recipe="auto"
    return KnockoffEnv(victim=victim, query_set=images, eval_set=eval_set,
                       hierarchy=resolve_hierarchy(hierarchy, dataset_labels(images)),
                       knockoff=partial(build_arch, arch or meta["arch"], meta["num_classes"], knockoff_init),
                       budget=default_budget(budget, BUDGET, len(images)), num_classes=meta["num_classes"],
                       label_names=dict(enumerate(str(c) for c in images.classes)), **kwargs)


_DOC = """``Knockoff-{title}-v0``: steal a {title} classifier (supplement D.1, small scale).

    ## Description
    The victim F_V is a {arch} trained from a random init on {title} by ``knockoff
    train-victim {name}``. The adversary queries images of P_A = {query_sets} (default
    {default}; ``"{name}"`` itself is P_V, the upper reference) and trains a knockoff of the
    same architecture online, from scratch or pretrained on the query task.
    ``env.unwrapped.retrain()`` then trains it offline on the transfer set.

    ## Action Space
    As :class:`~knockoff_env.env.KnockoffEnv`; by default one coarse node holds every label
    (the supplement uses the random strategy here), so actions are ``(0, label)``.

    ## Rewards
    ``reward="all"`` (paper): mean of normalised certainty, diversity and loss.

    ## Termination
    When the budget is spent (default: 50,000 queries, capped at the size of P_A) or P_A is
    exhausted. No truncation.

    ## Registered Configurations
    ``Knockoff-{title}-v0`` with options: ``query_set`` (one of {query_sets} or
    ``"{name}"``); ``data_root`` (else ``$KNOCKOFF_DATA``); ``victim_checkpoint`` (default
    ``<data_root>/victims/{name}/checkpoint.pt``); ``arch`` of the knockoff (default: the
    victim's); ``knockoff_init`` = ``"scratch"`` (default) or a PATH of weights pretrained
    on the query task; ``budget``; ``hierarchy`` (None, a dict or a JSON path);
    ``download`` (let torchvision fetch missing data; off by default). Every other keyword
    goes to ``KnockoffEnv``.
    """


def _entry(name: str, title: str, arch: str):
    def make(**kwargs) -> KnockoffEnv:
        return make_small_scale_env(name, **kwargs)
    query_sets = ", ".join(f'``"{q}"``' for q in QUERY_SETS[name])
    make.__name__ = make.__qualname__ = f"make_{name}_env"
    make.__doc__ = _DOC.format(name=name, title=title, arch=arch, query_sets=query_sets,
                               default=f'``"{QUERY_SETS[name][0]}"``')
    return make


make_mnist_env = _entry("mnist", "MNIST", "LeNet-like CNN")
make_cifar10_env = _entry("cifar10", "CIFAR10", "ResNet-18 (32 px stem)")
make_cifar100_env = _entry("cifar100", "CIFAR100", "ResNet-18 (32 px stem)")
