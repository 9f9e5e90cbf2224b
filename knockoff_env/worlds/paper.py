"""The paper's worlds: ResNet-34 victims on Caltech256, CUBS200, Indoor67 and Diabetic5,
attacked with the query sets ILSVRC, OpenImages or D² (and D²'s semi-open variants).

Everything is read from ``data_root`` (else ``$KNOCKOFF_DATA``) when the env is made,
never at import time; ``docs/worlds.md`` gives every layout and the commands from raw data
to a finished attack.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from ..core.env import KnockoffEnv
from ..data import d2, ilsvrc, openimages
from ..data.common import resolve_data_root
from ..data.query_set import dataset_labels
from ..data.transforms import IMAGE_SIZE
from ..data.victims import PAPER_VICTIMS
from ..models.architectures import RANDOM_INIT, build_arch
from .assembly import default_budget, resolve_hierarchy, world_victim
from .fast_images import fast_query_set
from .hierarchy import default_hierarchy_path

QUERY_SETS = ("ilsvrc", "openimages", "d2")
BUDGET = 60_000  # the paper's largest budget


def make_paper_env(victim_dataset: str, *, query_set: str = "ilsvrc", data_root=None,
                   victim_checkpoint: str | Path | None = None, arch: str = "resnet34",
                   knockoff_init: str | Path = "imagenet", image_size: int | None = None, budget: int | None = None,
                   hierarchy="auto", tau_d: float = 1.0, tau_k: float = 1.0, packed=None, decode: str = "pil",
                   **kwargs) -> KnockoffEnv:
    """The world of ``victim_dataset`` (one of the paper's four); see the registered entry points."""
    if victim_dataset not in PAPER_VICTIMS:
        raise ValueError(f"unknown paper victim {victim_dataset!r}; choose one of {tuple(PAPER_VICTIMS)}")
    if query_set not in QUERY_SETS:
        raise ValueError(f"query_set={query_set!r}; the paper's worlds take one of {QUERY_SETS}")
    if (tau_d != 1 or tau_k != 1) and query_set != "d2":
        raise ValueError("tau_d/tau_k set the overlap of the semi-open world, a variant of D²; "
                         "use them with query_set='d2'")
    root = resolve_data_root(data_root)
    victim, meta = world_victim(victim_dataset, root, victim_checkpoint, kwargs)
    image_size = image_size or meta["image_size"] or IMAGE_SIZE
    eval_set = PAPER_VICTIMS[victim_dataset].load("test", root, image_size=image_size)
    if meta["num_classes"] != len(eval_set.classes):
        raise ValueError(f"the victim has {meta['num_classes']} outputs but {victim_dataset} has "
                         f"{len(eval_set.classes)} classes; retrain it with knockoff train-victim")

    if query_set == "d2":
        images, tree = d2.load(root, image_size=image_size, victim=victim_dataset, tau_d=tau_d, tau_k=tau_k)
        if hierarchy != "auto":
            tree = resolve_hierarchy(hierarchy, dataset_labels(images))
        if victim_dataset in tree:  # D² holds the victim's own source: the in-domain node (copycat leaves it out)
            kwargs.setdefault("victim_domain", (victim_dataset,))
    else:
        images = (ilsvrc if query_set == "ilsvrc" else openimages).load(root, image_size=image_size)
        tree = resolve_hierarchy(hierarchy, dataset_labels(images), default_hierarchy_path(query_set, root),
                                 f"knockoff build-hierarchy {query_set} --data-root {root}")
    images = fast_query_set(images, packed, decode, image_size, kwargs.get("device", "auto"))
    kwargs.setdefault("knockoff_pretrained", str(knockoff_init) not in RANDOM_INIT)  # picks recipe="auto"
    return KnockoffEnv(victim=victim, query_set=images, hierarchy=tree, eval_set=eval_set,
                       knockoff=partial(build_arch, arch, meta["num_classes"], knockoff_init),
                       budget=default_budget(budget, BUDGET, len(images)), num_classes=meta["num_classes"],
                       label_names=dict(enumerate(images.classes)), **kwargs)


_DOC = """``Knockoff-{title}-v0``: steal the paper's {title} classifier ({what}).

    ## Description
    The victim F_V is a {title} classifier (the paper: ResNet-34 fine-tuned from ImageNet
    weights; here whatever ``knockoff train-victim {name}`` wrote) answering queries with
    probability vectors. The adversary queries images of P_A = ILSVRC (1000 labels, 30
    clustered coarse nodes), OpenImages, or D² (every dataset of the paper, one coarse node
    per source; the victim's training images included, its test images never) and trains a
    knockoff F_A online; afterwards ``env.unwrapped.retrain()`` trains it offline on the
    transfer set and ``evaluate()`` scores it on the {title} test split. The paper reports
    (its figures, not this project's): victim {victim_acc}% top-1, knockoff {knockoff_acc}%
    after 60k random ILSVRC queries.

    ## Action Space
    As :class:`~knockoff_env.env.KnockoffEnv`: ``MultiDiscrete([coarse nodes, labels per
    node])`` (``action_mode="flat"``: ``Discrete(labels)``); masks in ``info["action_mask"]``.

    ## Rewards
    ``reward="all"`` (paper): mean of normalised certainty, diversity and loss; every
    component raw and normalised in ``info["rewards"]``.

    ## Termination
    When the budget is spent (default: 60,000 queries, the paper's largest, capped at the
    size of P_A) or P_A is exhausted. No truncation.

    ## Registered Configurations
    ``Knockoff-{title}-v0`` with options: ``query_set`` = ``"ilsvrc"`` (default),
    ``"openimages"`` or ``"d2"``; ``data_root`` (else ``$KNOCKOFF_DATA``);
    ``victim_checkpoint`` (default ``<data_root>/victims/{name}/checkpoint.pt``); ``arch``
    of the knockoff (``"resnet34"``); ``knockoff_init`` = ``"imagenet"`` (default; weights
    from torchvision's cache), ``"scratch"`` or a PATH of weights pretrained on the query
    task (supplement D.1); ``image_size`` (default: the one the victim was trained at,
    else 224); ``budget``; ``hierarchy`` = ``"auto"``
    (ILSVRC/OpenImages: ``<data_root>/hierarchies/<query_set>-30.json`` from ``knockoff
    build-hierarchy``; D²: one node per source), ``None``, a dict or a JSON path; ``tau_d``
    / ``tau_k`` in (0, 1] with ``query_set="d2"``: the semi-open world of supplement D.4
    (fraction of the victim's images / labels kept in P_A); ``packed`` = the folder ``knockoff
    pack`` wrote from the same query set (zero decoding); ``decode`` = ``"pil"`` (default),
    ``"cpu"``/``"cuda"``/``"auto"`` (batched ``torchvision.io`` decoding, on the GPU with
    ``"cuda"``; slightly other pixels than Pillow's). Every other keyword goes to
    ``KnockoffEnv`` (``reward``, ``queries_per_step``, ``output``, ``device``, …).
    """


def _entry(name: str, title: str, what: str, victim_acc: str, knockoff_acc: str):
    def make(**kwargs) -> KnockoffEnv:
        return make_paper_env(name, **kwargs)
    make.__name__ = make.__qualname__ = f"make_{name}_env"
    make.__doc__ = _DOC.format(name=name, title=title, what=what, victim_acc=victim_acc, knockoff_acc=knockoff_acc)
    return make


make_caltech256_env = _entry("caltech256", "Caltech256", "256 object categories", "78.4", "76.0")
make_cubs200_env = _entry("cubs200", "CUBS200", "200 bird species, fine-grained", "77.1", "67.7")
make_indoor67_env = _entry("indoor67", "Indoor67", "67 indoor scene types", "76.0", "68.2")
make_diabetic5_env = _entry("diabetic5", "Diabetic5", "5 diabetic-retinopathy grades, medical", "59.4", "43.6")
