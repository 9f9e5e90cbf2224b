"""D², the paper's closed world: the union of every dataset of the paper.

P_A = ILSVRC (1000) + OpenImages + Caltech256 (256) + CUBS200 (200) + Indoor67 (67) +
Diabetic5 (5) labels (2129 with the paper's 601 OpenImages labels). The victims' datasets
contribute their *training* splits only, so no test image is ever queried. Label ids are
offset per source in that order; the hierarchy has one coarse node per source.

Semi-open world (supplement D.4): the victim's own part of D² is the overlap between P_A
and P_V. ``tau_k`` keeps that fraction of its labels (all images of the kept labels);
``tau_d`` keeps that fraction of its images. Both are drawn with
:data:`~knockoff_env.data.common.SPLIT_SEED`; 1 (default) is the closed world.
"""
from __future__ import annotations

import math

import numpy as np

from . import caltech256, cubs200, diabetic5, ilsvrc, indoor67, openimages
from .common import SPLIT_SEED, ImageFiles
from .transforms import IMAGE_SIZE, paper_transform

SOURCES = {"ilsvrc": ilsvrc, "openimages": openimages, "caltech256": caltech256,
           "cubs200": cubs200, "indoor67": indoor67, "diabetic5": diabetic5}
VICTIM_SOURCES = ("caltech256", "cubs200", "indoor67", "diabetic5")


def load(data_root=None, *, image_size: int = IMAGE_SIZE, victim: str | None = None,
         tau_d: float = 1.0, tau_k: float = 1.0) -> tuple[ImageFiles, dict[str, list[int]]]:
    """(D² as one dataset, its hierarchy ``{source: [label ids]}``).

    ``victim`` names the source whose overlap ``tau_d``/``tau_k`` reduce; it is required
    when either is below 1.
    """
    for name, tau in (("tau_d", tau_d), ("tau_k", tau_k)):
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau <= 1:
            raise ValueError(f"{name}={tau!r} must be a fraction in (0, 1] (1 = the closed world)")
    if (tau_d < 1 or tau_k < 1) and victim not in VICTIM_SOURCES:
        raise ValueError(f"tau_d/tau_k need the victim's dataset, one of {VICTIM_SOURCES}; got victim={victim!r}")
    samples, classes, hierarchy = [], [], {}
    for source, module in SOURCES.items():
        part = module.load(data_root, image_size=image_size) if source in ("ilsvrc", "openimages") \
            else module.load("train", data_root, image_size=image_size)
        if source == victim:
            part = semi_open(part, tau_d, tau_k)
        offset = len(classes)
        samples += [(path, offset + label) for path, label in part.samples]
        classes += [f"{source}/{name}" for name in part.classes]
        hierarchy[source] = [offset + z for z in np.unique(part.targets).tolist()]
    return ImageFiles(samples, classes, paper_transform(image_size)), hierarchy


def semi_open(part: ImageFiles, tau_d: float = 1.0, tau_k: float = 1.0) -> ImageFiles:
    """The fraction ``tau_k`` of ``part``'s labels, then the fraction ``tau_d`` of their images."""
    rng = np.random.default_rng(SPLIT_SEED)
    labels = np.unique(part.targets)
    kept_labels = rng.choice(labels, math.ceil(tau_k * len(labels)), replace=False)
    index = np.flatnonzero(np.isin(part.targets, kept_labels))
    index = np.sort(rng.choice(index, math.ceil(tau_d * len(index)), replace=False))
    return part.subset(index)
