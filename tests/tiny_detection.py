"""A tiny detection problem (an ID train/test set, an OOD set and a mixed open-set set) and a
tiny GN Faster R-CNN config for fast CPU tests."""

from pathlib import Path

import json

import cv2
import numpy as np
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

import vos_det
from vos_det.data import register_ood_dataset
from vos_det.data.open_set_datasets import register_open_set_dataset
from vos_det.engine import VOSTrainer

CLASS_COLOURS = [(255, 60, 60), (60, 255, 60), (60, 60, 255)]  # one colour per class (BGR)
IMAGE_SIZE = 64
TINY_OOD = "vos_tiny_ood"  # the OOD set of register_tiny_ood_dataset
TINY_MIXED = "vos_tiny_mixed"  # the mixed set of register_tiny_mixed_dataset


def write_tiny_dataset(root: Path, num_images: int, seed: int = 0) -> list:
    """Images of 1-2 filled rectangles on noise; returns Detectron2 dataset dicts."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for image_id in range(num_images):
        image = rng.integers(0, 60, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        annotations = []
        for _ in range(rng.integers(1, 3)):
            w, h = rng.integers(14, 30, size=2)
            x0, y0 = rng.integers(0, IMAGE_SIZE - w), rng.integers(0, IMAGE_SIZE - h)
            category = int(rng.integers(0, len(CLASS_COLOURS)))
            cv2.rectangle(
                image,
                (int(x0), int(y0)),
                (int(x0 + w - 1), int(y0 + h - 1)),
                CLASS_COLOURS[category],
                thickness=-1,
            )
            annotations.append(
                {
                    "bbox": [float(x0), float(y0), float(x0 + w), float(y0 + h)],
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": category,
                }
            )
        file_name = str(root / f"{image_id:04d}.png")
        cv2.imwrite(file_name, image)
        records.append(
            {
                "file_name": file_name,
                "image_id": image_id,
                "height": IMAGE_SIZE,
                "width": IMAGE_SIZE,
                "annotations": annotations,
            }
        )
    return records


def register_tiny_dataset(name: str, root: Path, num_images: int, seed: int = 0) -> None:
    if name in DatasetCatalog.list():
        return
    records = write_tiny_dataset(root, num_images, seed)
    DatasetCatalog.register(name, lambda records=records: records)
    MetadataCatalog.get(name).set(thing_classes=["red", "green", "blue"], evaluator_type="coco")


def register_tiny_ood_dataset(root: Path, num_images: int = 4) -> str:
    """Images of 1-2 filled circles (a shape and colours the ID set lacks), as an OOD set."""
    if TINY_OOD in DatasetCatalog.list():
        return TINY_OOD
    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(num_images):
        image = rng.integers(0, 60, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        for _ in range(rng.integers(1, 3)):
            radius = int(rng.integers(7, 14))
            centre = tuple(int(c) for c in rng.integers(radius, IMAGE_SIZE - radius, size=2))
            colour = [(255, 255, 60), (255, 60, 255)][int(rng.integers(0, 2))]
            cv2.circle(image, centre, radius, colour, thickness=-1)
        cv2.imwrite(str(root / f"{index:04d}.png"), image)
    register_ood_dataset(TINY_OOD, str(root), id_classes=["red", "green", "blue"])
    return TINY_OOD


def register_tiny_mixed_dataset(root: Path, num_images: int = 6) -> str:
    """Images of known rectangles beside unknown circles (the last image: rectangles only), as
    an open-set set in COCO format (categories red, green, blue and "unknown")."""
    if TINY_MIXED in DatasetCatalog.list():
        return TINY_MIXED
    rng = np.random.default_rng(11)
    root.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        image = rng.integers(0, 60, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        objects = [("rectangle", int(rng.integers(0, 3)))]
        if index < num_images - 1:
            objects.append(("circle", 3))
        for kind, category in objects:
            if kind == "rectangle":
                w, h = (int(v) for v in rng.integers(14, 26, size=2))
                x0, y0 = (int(v) for v in rng.integers(0, IMAGE_SIZE // 2 - 4, size=2))
                cv2.rectangle(
                    image, (x0, y0), (x0 + w - 1, y0 + h - 1), CLASS_COLOURS[category], -1
                )
            else:
                r = int(rng.integers(7, 11))
                cx, cy = (int(v) for v in rng.integers(IMAGE_SIZE // 2 + r, IMAGE_SIZE - r, size=2))
                cv2.circle(image, (cx, cy), r, (255, 255, 60), thickness=-1)
                x0, y0, w, h = cx - r, cy - r, 2 * r + 1, 2 * r + 1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": category + 1,
                    "bbox": [x0, y0, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        cv2.imwrite(str(root / f"{index:04d}.png"), image)
        images.append(
            {
                "id": index + 1,
                "file_name": f"{index:04d}.png",
                "height": IMAGE_SIZE,
                "width": IMAGE_SIZE,
            }
        )
    categories = [
        {"id": i + 1, "name": n} for i, n in enumerate(["red", "green", "blue", "unknown"])
    ]
    json_file = root / "mixed.json"
    json_file.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    register_open_set_dataset(TINY_MIXED, str(root), str(json_file), ["red", "green", "blue"])
    return TINY_MIXED


def tiny_cfg(train: str, test: str, output_dir: str, **vos):
    """A GN ResNet-18 FPN Faster R-CNN with the VOS predictor, small enough for CPU tests."""
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.merge_from_file(vos_det.model_zoo.get_config_file("Base-VOS-RCNN-FPN.yaml"))
    overrides = {
        "MODEL.DEVICE": "cpu",
        "MODEL.WEIGHTS": "",
        "MODEL.RESNETS.DEPTH": 18,
        "MODEL.RESNETS.RES2_OUT_CHANNELS": 64,
        "MODEL.RESNETS.NORM": "GN",
        "MODEL.RESNETS.STRIDE_IN_1X1": False,
        "MODEL.BACKBONE.FREEZE_AT": 0,
        "MODEL.FPN.NORM": "GN",
        "MODEL.FPN.OUT_CHANNELS": 32,
        "MODEL.ANCHOR_GENERATOR.SIZES": [[8], [16], [32], [64], [128]],
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE": 64,
        "MODEL.RPN.POST_NMS_TOPK_TRAIN": 100,
        "MODEL.RPN.POST_NMS_TOPK_TEST": 100,
        "MODEL.ROI_HEADS.NUM_CLASSES": 3,
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 64,
        "MODEL.ROI_BOX_HEAD.FC_DIM": 32,
        "INPUT.MIN_SIZE_TRAIN": (64,),
        "INPUT.MAX_SIZE_TRAIN": 64,
        "INPUT.MIN_SIZE_TEST": 64,
        "INPUT.MAX_SIZE_TEST": 64,
        "INPUT.RANDOM_FLIP": "none",
        "DATASETS.TRAIN": (train,),
        "DATASETS.TEST": (test,),
        "DATALOADER.NUM_WORKERS": 0,
        "SOLVER.IMS_PER_BATCH": 2,
        "SOLVER.BASE_LR": 0.01,
        "SOLVER.WARMUP_ITERS": 0,
        "SOLVER.MAX_ITER": 6,
        "SOLVER.STEPS": (),
        "SOLVER.CHECKPOINT_PERIOD": 100000,
        "TEST.EVAL_PERIOD": 0,
        "VOS.QUEUE_SIZE": 8,
        "VOS.START_ITER": 3,
        "VOS.MIN_QUEUE_FILL": 2,
        "VOS.NUM_CANDIDATES": 100,
        "OUTPUT_DIR": output_dir,
        "SEED": 1,
    }
    overrides.update({f"VOS.{key}": value for key, value in vos.items()})
    cfg.merge_from_list([item for pair in overrides.items() for item in pair])
    return cfg


def train_tiny_vos_run(train: str, test: str, ood: str, output_dir: str):
    """Train the tiny VOS model 6 steps (loss from step 3), evaluating the ID test set and the
    OOD set afterwards (a threshold of 0.05 keeps low-probability boxes).

    ``output_dir`` then holds ``config.yaml`` (``cfg.dump()``), ``model_final.pth`` and
    ``inference/`` (``ood_results.json``, the per-box scores, the plots).

    Returns:
        tuple: (the frozen config, the trained ``VOSTrainer``).
    """
    cfg = tiny_cfg(train, test, output_dir)
    cfg.DATASETS.TEST = (test, ood)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.01
    cfg.VOS.EVAL.SCORE_THRESHOLD = 0.05
    cfg.freeze()
    Path(output_dir, "config.yaml").write_text(cfg.dump())
    trainer = VOSTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return cfg, trainer
