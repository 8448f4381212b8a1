#!/usr/bin/env python3
"""Pretrain the benchmark's backbone on the procedural corpus (``make pretrain``).

    python tools/pretrain_backbone.py                      # synthetic_R18_GN, if not cached
    python tools/pretrain_backbone.py --force              # pretrain again
    python tools/pretrain_backbone.py --threads 1          # one core (the default: all)

The ResNet-18-GN of ``configs/Synthetic/Base-Synthetic.yaml`` learns to classify 32 px crops
of 64 procedural shape classes (``vos_det.pretraining``: none of them a benchmark shape), the
benchmark's stand-in for ImageNet pretraining. The weights go to
``$VOS_DET_PRETRAINED/<name>/model_final.pth`` (default ``pretrained/``) under Detectron2's key
names, with a manifest; configs load them as ``MODEL.WEIGHTS vos_det://pretrained/<name>``, and
``make demo``, ``make benchmark`` and ``tools/train_classifier.py`` build them on first use. A
cache that is damaged or was built with another config is built again.
"""

import argparse
import json
import os
import sys
import time
from typing import List, Optional

from vos_det.pretraining.weights import PRETRAINED_MODELS, RECORD_FILE, pretrain_with_progress


def parse_arguments(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--name", default="synthetic_R18_GN", choices=sorted(PRETRAINED_MODELS), help="weights"
    )
    parser.add_argument("--root", help="cache root (default $VOS_DET_PRETRAINED or pretrained)")
    parser.add_argument("--force", action="store_true", help="pretrain even if cached")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all)"
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.root and os.path.exists(args.root) and not os.path.isdir(args.root):
        parser.error(f"--root {args.root} is a file, not a folder")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_arguments(argv)
    start = time.perf_counter()
    try:
        path = pretrain_with_progress(args.name, args.root, args.force, args.threads)
    except KeyboardInterrupt:
        print("Interrupted: nothing was cached; run the same command to pretrain again.")
        return 130
    with open(os.path.join(os.path.dirname(path), RECORD_FILE), encoding="utf-8") as f:
        record = json.load(f)
    print(
        f"{args.name}: {path} ({record['validation_accuracy']:.1f}% held-out corpus accuracy, "
        f"pretrained in {record['seconds'] / 60:.1f} min; this call {time.perf_counter() - start:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
