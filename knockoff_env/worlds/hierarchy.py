"""Label hierarchies of the query set: root → coarse nodes → labels.

ILSVRC (supplement B.4): the mean penultimate-layer feature of every label under an
ImageNet-pretrained ResNet, clustered into N = 30 coarse nodes with scikit-learn's
agglomerative clustering (Ward linkage). The paper names each cluster by its common
WordNet parent; offline we name it after its most central label ("07 tabby"). The result
is cached as human-readable JSON:

    {"hierarchy": {"00 tench": [0, 1, 391], ...}, "label_names": {"0": "tench", ...},
     "built_with": {"dataset": "ilsvrc", "arch": "resnet50", ...}}

:func:`load_hierarchy` reads that file, or a user's plain ``{coarse name: [label ids]}``
JSON file, and validates it. The D² hierarchy (one node per source dataset) is built by
:func:`knockoff_env.data.d2.load`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import AgglomerativeClustering
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data import ilsvrc, openimages
from ..data.common import resolve_data_root
from ..data.query_set import dataset_labels
from ..devices import resolve_device
from ..models.architectures import feature_extractor

CLUSTERED = {"ilsvrc": ilsvrc, "openimages": openimages}
CLUSTERS = 30


def default_hierarchy_path(dataset: str, data_root=None, clusters: int = CLUSTERS) -> Path:
    """Where worlds look for a built hierarchy: ``<data_root>/hierarchies/<dataset>-<clusters>.json``."""
    return resolve_data_root(data_root) / "hierarchies" / f"{dataset}-{clusters}.json"


def validate_hierarchy(hierarchy, labels: np.ndarray | None = None, source: str = "hierarchy") -> dict[str, list[int]]:
    """``{coarse name: [label ids]}`` checked: non-empty nodes of non-negative integer ids, each
    label in one node, and (given the query set's ``labels``) every label covered, none unknown."""
    if not isinstance(hierarchy, Mapping) or not hierarchy:
        raise ValueError(f"{source}: a hierarchy is a non-empty JSON object {{coarse name: [label ids]}}")
    out: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for name, members in hierarchy.items():
        if not isinstance(members, list) or not members:
            raise ValueError(f"{source}: coarse node {name!r} must map to a non-empty list of label ids, "
                             f"got {members!r}")
        for z in members:
            if isinstance(z, bool) or not isinstance(z, (int, np.integer)) or z < 0:
                raise ValueError(f"{source}: coarse node {name!r} holds {z!r}; label ids are integers ≥ 0")
            if z in owner:
                raise ValueError(f"{source}: label {z} is in coarse nodes {owner[z]!r} and {name!r}; "
                                 "each label belongs to exactly one")
            owner[z] = name
        out[str(name)] = [int(z) for z in members]
    if labels is not None:
        present = set(np.unique(labels).tolist())
        uncovered, unknown = sorted(present - set(owner)), sorted(set(owner) - present)
        if uncovered:
            raise ValueError(f"{source}: query-set labels {uncovered[:10]} are in no coarse node; "
                             "the hierarchy was built for another query set — rebuild it")
        if unknown:
            raise ValueError(f"{source}: labels {unknown[:10]} are not in the query set (it has "
                             f"{len(present)} labels); the hierarchy was built for another query set")
    return out


def load_hierarchy(path: str | Path, labels: np.ndarray | None = None) -> tuple[dict[str, list[int]], dict[int, str]]:
    """(hierarchy, label names) from a JSON file written by :func:`save_hierarchy` or a plain
    ``{coarse name: [label ids]}`` object."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"hierarchy file {path} not found")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    names: dict[int, str] = {}
    if isinstance(content, dict) and "hierarchy" in content:
        names = {int(k): str(v) for k, v in content.get("label_names", {}).items()}
        content = content["hierarchy"]
    return validate_hierarchy(content, labels, str(path)), names


def save_hierarchy(path: str | Path, hierarchy: Mapping[str, list[int]], label_names: Mapping[int, str],
                   built_with: Mapping | None = None) -> Path:
    """Write the JSON file :func:`load_hierarchy` reads."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"hierarchy": {k: [int(z) for z in v] for k, v in hierarchy.items()},
               "label_names": {str(k): v for k, v in label_names.items()},
               "built_with": dict(built_with or {})}
    path.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n")
    return path


@torch.inference_mode()
def class_mean_features(model: nn.Module, dataset: Dataset, num_classes: int, *, batch_size: int = 64,
                        workers: int = 0, device: str | torch.device = "auto", progress: bool = True) -> np.ndarray:
    """The (num_classes, D) mean feature vector of every label's images under ``model``."""
    device = resolve_device(device)
    model = model.to(device).eval()
    sums, counts = None, torch.zeros(num_classes, dtype=torch.float64)
    loader = DataLoader(dataset, batch_size, num_workers=workers)
    for x, y in tqdm(loader, desc="class mean features", disable=not progress):
        features = model(x.to(device)).flatten(1).double().cpu()
        if sums is None:
            sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64)
        sums.index_add_(0, y, features)
        counts += torch.bincount(y, minlength=num_classes).double()
    if sums is None or (counts == 0).any():
        raise ValueError(f"labels {torch.nonzero(counts == 0).flatten()[:10].tolist()} have no image; "
                         "every label needs at least one to get a mean feature")
    return (sums / counts[:, None]).numpy()


def cluster_labels(features: np.ndarray, clusters: int, label_names: Mapping[int, str]) -> dict[str, list[int]]:
    """Agglomerative clustering of the label features into ``clusters`` coarse nodes, each
    named after its label closest to the cluster mean."""
    if not 1 <= clusters <= len(features):
        raise ValueError(f"clusters={clusters} must be between 1 and the number of labels ({len(features)})")
    assignment = AgglomerativeClustering(n_clusters=clusters).fit_predict(features)
    hierarchy = {}
    for c in range(clusters):
        members = np.flatnonzero(assignment == c)
        central = members[np.argmin(((features[members] - features[members].mean(0)) ** 2).sum(1))]
        hierarchy[f"{c:02d} {label_names.get(int(central), central)}"] = members.tolist()
    return hierarchy


def build_hierarchy(dataset: str = "ilsvrc", data_root=None, *, clusters: int = CLUSTERS,
                    out: str | Path | None = None, arch: str = "resnet50", pretrained: str | Path = "imagenet",
                    image_size: int = 224, per_class: int | None = None, batch_size: int = 64,
                    workers: int = 0, device: str = "auto", progress: bool = True) -> Path:
    """Cluster the labels of query set ``dataset`` and cache the hierarchy as JSON; returns its path.

    ``per_class`` limits the images averaged per label (the first ones in listing order) to
    make the pass cheaper; the paper uses every image.
    """
    if dataset not in CLUSTERED:
        raise ValueError(f"hierarchies are clustered for {tuple(CLUSTERED)}; got {dataset!r}")
    if per_class is not None and (int(per_class) != per_class or per_class < 1):
        raise ValueError(f"per_class={per_class!r} must be a positive integer")
    images = CLUSTERED[dataset].load(data_root, image_size=image_size)
    labels = dataset_labels(images)
    if per_class is not None:
        keep = np.concatenate([np.flatnonzero(labels == z)[:per_class] for z in np.unique(labels)])
        images = images.subset(np.sort(keep))
    model = feature_extractor(arch, pretrained)
    features = class_mean_features(model, images, len(images.classes), batch_size=batch_size,
                                   workers=workers, device=device, progress=progress)
    names = dict(enumerate(images.classes))
    hierarchy = cluster_labels(features, clusters, names)
    path = Path(out) if out is not None else default_hierarchy_path(dataset, data_root, clusters)
    return save_hierarchy(path, hierarchy, names, dict(dataset=dataset, arch=arch, pretrained=str(pretrained),
                                                       clusters=clusters, image_size=image_size,
                                                       per_class=per_class, linkage="ward"))
