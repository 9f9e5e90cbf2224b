"""``knockoff pack``: decode a query set once into uint8 shards (see :mod:`knockoff_env.packed`)."""
from __future__ import annotations

import argparse
from pathlib import Path

NAMED = ("ilsvrc", "openimages")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pack", help="decode a query set once into memory-mapped uint8 shards (no decoding in attacks)",
        description="Decode SOURCE once, resize and crop it to the query resolution and write it to OUT as "
                    "uint8 .npy shards with an index.json. Attacks then read it with zero decoding: "
                    "--env-arg packed=OUT (paper worlds) or PackedImages(OUT).")
    p.add_argument("source", help="ilsvrc | openimages (read from --data-root), a folder of class sub-folders, "
                                  "or a Hugging Face dataset folder written by save_to_disk")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--data-root", help="for ilsvrc/openimages (default: $KNOCKOFF_DATA)")
    p.add_argument("--image-size", type=int, default=224, help="the paper's preprocessing at this crop size")
    p.add_argument("--timm", metavar="MODEL", help="use timm model MODEL's preprocessing instead")
    p.add_argument("--split", default="train", help="split of a Hugging Face DatasetDict")
    p.add_argument("--shard-size", type=int, default=4096, help="images per shard")
    p.add_argument("--workers", type=int, default=2, help="decoding threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_pack)


def pack_source(source: str, data_root=None, split: str = "train"):
    """The dataset ``source`` names (see the command's help)."""
    from knockoff_env.data import ilsvrc, openimages
    from knockoff_env.data.common import class_folders
    from knockoff_env.data.hf import DISK_MARKERS, HFImages

    if source in NAMED:
        return (ilsvrc if source == "ilsvrc" else openimages).load(data_root)
    path = Path(source).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder; give {' or '.join(NAMED)}, a folder of class "
                                "sub-folders, or a save_to_disk dataset folder")
    if any((path / m).exists() for m in DISK_MARKERS):
        return HFImages(path, split=split)
    return class_folders(path, None)


def run_pack(args) -> None:
    from knockoff_env.data.decode import Preprocess
    from knockoff_env.data.packed import pack

    if args.timm:
        from knockoff_env.models.timm import timm_preprocess
        preprocess = timm_preprocess(args.timm)
    else:
        preprocess = Preprocess.paper(args.image_size)
    source = pack_source(args.source, args.data_root, args.split)
    out = pack(source, args.out, preprocess, shard_size=args.shard_size, workers=args.workers,
               progress=not args.quiet, description=str(args.source))
    print(f"packed {len(source)} images ({preprocess.crop[0]}×{preprocess.crop[1]}) into {out}")
