"""VOS for image classifiers (plain PyTorch, no Detectron2 import in this package's modules).

:class:`VOSClassifier` wraps any backbone of pooled features with a bottleneck, a classifier and
the detector's VOS core (queues, outlier sampler, energy head, score registry);
:mod:`~vos_det.classification.data` generates the embedded classification benchmark and
:mod:`~vos_det.classification.training` trains and evaluates on it (``tools/train_classifier.py``).
"""

from .data import (
    CLASSIFICATION_SPLITS,
    ClassificationBenchmarkSpec,
    default_classification_root,
    generate_classification_benchmark,
    load_split,
    render_classification_image,
)
from .figure import score_grid
from .model import (
    CLASSIFIER_SCORES,
    PretrainedResNet,
    SmallCNN,
    VOSClassifier,
    VOSClassifierConfig,
)
from .training import (
    TrainingConfig,
    build_classifier,
    evaluate_classifier,
    predict,
    train_classifier,
)

__all__ = [
    "CLASSIFICATION_SPLITS",
    "CLASSIFIER_SCORES",
    "ClassificationBenchmarkSpec",
    "PretrainedResNet",
    "SmallCNN",
    "TrainingConfig",
    "VOSClassifier",
    "VOSClassifierConfig",
    "build_classifier",
    "default_classification_root",
    "evaluate_classifier",
    "generate_classification_benchmark",
    "load_split",
    "predict",
    "render_classification_image",
    "score_grid",
    "train_classifier",
]
