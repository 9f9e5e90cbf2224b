"""``knockoff train-victim``: train a world's victim with the paper's recipe."""
from __future__ import annotations

import argparse

from knockoff_env.data.victims import VICTIM_DATASETS
from knockoff_env.models.architectures import ARCHS
from knockoff_env.victim.training import train_victim

from .options import add_common, add_data_root


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-victim", help="train a world's victim with the paper's recipe",
                              description="Train the victim F_V of DATASET (paper recipe: SGD, lr 0.1; "
                                          "Diabetic5 lr 0.01 with class-weighted loss) and save its best "
                                          "epoch as OUT/checkpoint.pt.")
    p.add_argument("dataset", type=str.lower, choices=VICTIM_DATASETS)
    add_data_root(p)
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
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> None:
    result = train_victim(args.dataset, args.data_root, args.out, arch=args.arch, pretrained=args.pretrained,
                          epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size,
                          lr=args.lr, momentum=args.momentum, step_size=args.step_size, gamma=args.gamma,
                          workers=args.workers, device=args.device, seed=args.seed, download=args.download,
                          progress=args.progress)
    print(f"victim {result['dataset']} ({result['arch']}): test accuracy {result['accuracy']:.4f} "
          f"at epoch {result['epoch']} -> {result['path']}")
