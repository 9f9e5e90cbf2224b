"""``knockoff build-hierarchy``: cluster a query set's labels into coarse nodes."""
from __future__ import annotations

import argparse

from knockoff_env.models.architectures import RESNETS
from knockoff_env.worlds.hierarchy import CLUSTERED, CLUSTERS, build_hierarchy

from .options import add_common, add_data_root


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("build-hierarchy", help="cluster a query set's labels into coarse nodes",
                              description="Cluster the per-label mean ResNet features of a query set into "
                                          "coarse nodes (agglomerative, as the paper's ILSVRC hierarchy) and "
                                          "cache them as JSON.")
    p.add_argument("dataset", type=str.lower, choices=tuple(CLUSTERED))
    add_data_root(p)
    p.add_argument("--clusters", type=int, default=CLUSTERS)
    p.add_argument("--out", help="JSON file (default: DATA_ROOT/hierarchies/DATASET-CLUSTERS.json, where worlds look)")
    p.add_argument("--arch", choices=RESNETS, default="resnet50", help="feature extractor (2048-d for resnet50)")
    p.add_argument("--pretrained", default="imagenet", help="imagenet | none | PATH of a state dict")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--per-class", type=int, help="images averaged per label (default: all)")
    p.add_argument("--batch-size", type=int, default=64)
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> None:
    path = build_hierarchy(args.dataset, args.data_root, clusters=args.clusters, out=args.out, arch=args.arch,
                           pretrained=args.pretrained, image_size=args.image_size, per_class=args.per_class,
                           batch_size=args.batch_size, workers=args.workers, device=args.device,
                           progress=args.progress)
    print(f"hierarchy of {args.dataset} with {args.clusters} coarse nodes -> {path}")
