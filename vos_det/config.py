"""VOS configuration keys: :func:`add_vos_config` adds them, documented one by one;
:func:`vos_det.modeling.config_checks.validate_vos_config` checks their values, and
:func:`load_vos_config` builds a checked config from a file and overrides, as every tool does."""

import os
from typing import Optional, Sequence

import yaml
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from . import model_zoo
from .core.scores import DEFAULT_KNN_K
from .modeling.config_checks import validate_vos_config

__all__ = ["add_vos_config", "load_vos_config"]


def add_vos_config(cfg: CN) -> None:
    """Add every ``VOS.*`` key (and the RegNet backbone keys) to a Detectron2 config, in place."""
    cfg.VOS = CN()
    # Train the uncertainty branch. False gives the vanilla detector: same heads, same scores
    # attached at inference, no uncertainty loss (the baseline); it keeps feature queues only
    # when a score of VOS.SCORE or VOS.EVAL.SCORES reads them, and then fills them in training
    # with the foreground features (statistics only, no loss).
    cfg.VOS.ENABLED = True
    # Feature vectors kept per class (the paper's |Q_k|): 1000 for VOC, 300 for BDD100K.
    cfg.VOS.QUEUE_SIZE = 1000
    # Iteration from which the uncertainty loss is trained (paper: 12k of 18k on VOC).
    # Before it, the queues only fill.
    cfg.VOS.START_ITER = 12000
    # Outliers are synthesised for a class once its queue holds this many vectors;
    # 0 = only once every class queue is full (the paper's rule). A class without training boxes
    # never fills its queue: from START_ITER on a warning names the classes still short, and with
    # 0 the uncertainty loss stays off; set a value > 0 to train with the filled classes.
    cfg.VOS.MIN_QUEUE_FILL = 0
    # Candidates per class among which the lowest-likelihood ones are kept (the paper's t).
    cfg.VOS.NUM_CANDIDATES = 10000
    # Virtual outliers kept per class and iteration (lowest likelihood among the candidates).
    cfg.VOS.NUM_SELECT = 1
    # Weight of the uncertainty loss in the total loss (the paper's beta).
    cfg.VOS.LOSS_WEIGHT = 0.1
    # Where the virtual outliers come from (vos_det.core.outlier_synthesis): "gaussian" (the paper:
    # the NUM_SELECT lowest-likelihood of NUM_CANDIDATES samples of each class's Gaussian) or
    # "boundary" (non-parametric, after NPOS: NUM_CANDIDATES noisy copies of the class's queued
    # features with the largest k-NN distance, the NUM_SELECT farthest from all queued features
    # kept). A class takes part once its queue holds BOUNDARY.K + 1 vectors.
    cfg.VOS.SYNTHESIS = "gaussian"
    cfg.VOS.BOUNDARY = CN()
    # k of both nearest-neighbour distances (boundary features, candidates' distance).
    cfg.VOS.BOUNDARY.K = 10
    # Queued features per class taken as its boundary (those with the largest k-NN distance).
    cfg.VOS.BOUNDARY.NUM_BOUNDARY = 20
    # Length of the noise added to a boundary feature, in units of the class's mean k-NN radius.
    cfg.VOS.BOUNDARY.NOISE_SCALE = 1.0

    # The uncertainty head on the weighted energy (vos_det.core.energy.EnergyUncertaintyHead), whose
    # sigmoid is the "vos" score. HIDDEN_DIM 0: the paper's logistic layer on -E; > 0: an MLP
    # 1 -> HIDDEN_DIM -> 1 (ReLU), the VOS authors' MLP variant (512 there), which can tell a
    # band of energies from both of its sides.
    cfg.VOS.ENERGY_HEAD = CN()
    cfg.VOS.ENERGY_HEAD.HIDDEN_DIM = 0

    # FEVER-OOD (vos_det.core.spectral_penalty): shrink the classifier's null space, in which offsets
    # of a feature (e.g. a virtual outlier's) leave the energy unchanged. PROJECTION_DIM > 0: a
    # linear projection of the box feature to this many dimensions before the classifier (box
    # regression keeps the full feature); the queues, the outliers and the feature scores then
    # live in the projected space. PENALTY: "none", "least_singular_value" (1 / sigma_min of the
    # (K, D) foreground classifier weight) or "condition_number" (sigma_max / sigma_min), added as
    # loss_singular_value with weight PENALTY_WEIGHT from the first iteration.
    cfg.VOS.FEVER = CN()
    cfg.VOS.FEVER.PROJECTION_DIM = 0
    cfg.VOS.FEVER.PENALTY = "none"
    cfg.VOS.FEVER.PENALTY_WEIGHT = 0.01

    # A feature-space uncertainty head (vos_det.core.feature_head, as in NPOS): an MLP
    # D -> HIDDEN_DIM -> HIDDEN_DIM -> 1 on the (L2-normalised with NORMALIZE) box features,
    # trained from START_ITER on to tell real foreground features (ID) from the virtual outliers,
    # as loss_feature_uncertainty with weight LOSS_WEIGHT; its sigmoid is the "feature_head"
    # score. HIDDEN_DIM 0 = no such head. Needs VOS.ENABLED (it learns from the outliers).
    cfg.VOS.FEATURE_HEAD = CN()
    cfg.VOS.FEATURE_HEAD.HIDDEN_DIM = 0
    cfg.VOS.FEATURE_HEAD.NORMALIZE = True
    cfg.VOS.FEATURE_HEAD.LOSS_WEIGHT = 0.1
    # Box-crop features (vos_det.modeling.crop_encoder), read by the "crop_mahalanobis" and
    # "crop_knn" scores: each box, made square and widened by MARGIN of its longer side on every
    # side, is resampled from the input image to SIZE x SIZE pixels and embedded by a frozen copy
    # of a pretrained ResNet like MODEL.RESNETS (its res5, globally pooled). Class statistics:
    # QUEUE_SIZE crop features per class of the ground-truth boxes seen in training (or fitted by
    # tools/fit_feature_statistics.py). SIZE is the input size the ResNet was pretrained at (32
    # for the embedded benchmark's corpus pretraining, about 224 for ImageNet weights). WEIGHTS:
    # the checkpoint whose backbone ResNet the encoder holds; "" = MODEL.WEIGHTS. Built only when
    # a score of VOS.SCORE or VOS.EVAL.SCORES reads crop features.
    cfg.VOS.CROP_FEATURES = CN()
    cfg.VOS.CROP_FEATURES.SIZE = 32
    cfg.VOS.CROP_FEATURES.MARGIN = 0.15
    cfg.VOS.CROP_FEATURES.QUEUE_SIZE = 1000
    cfg.VOS.CROP_FEATURES.WEIGHTS = ""
    # Layer features (vos_det.modeling.layer_features), read by "layer_mahalanobis" (the sum
    # over the layers of each layer's squared Mahalanobis distance, standardised by the
    # distances of its queued vectors) and "layer_mahalanobis_<layer>" (one layer's distance):
    # each box is ROI-pooled (averaged over the box) at every layer of IN_FEATURES, backbone
    # outputs such as the FPN levels "p2"-"p6", or the ResNet stages "res2"-"res5" with
    # MODEL.BACKBONE.NAME "build_resnet_fpn_stages_backbone". Class statistics: QUEUE_SIZE
    # vectors per class and layer of the ground-truth boxes seen in training (or fitted by
    # tools/fit_feature_statistics.py). Built only when a configured score reads them.
    cfg.VOS.LAYER_FEATURES = CN()
    cfg.VOS.LAYER_FEATURES.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.VOS.LAYER_FEATURES.QUEUE_SIZE = 1000
    # Ridge added to the shared covariance by the "ridge" estimator: Sigma + COV_EPS * I.
    cfg.VOS.COV_EPS = 1e-4
    # How the class Gaussians' shared covariance is estimated from the queued vectors (box and
    # crop queues), for the Mahalanobis scores and for sampling virtual outliers: "ridge" (the
    # pooled within-class sample covariance + COV_EPS * I), "ledoit_wolf" or "oas" (the sample
    # covariance shrunk towards a multiple of I by the Ledoit-Wolf or the oracle approximating
    # shrinkage, estimated from the data; vos_det/core/covariance.py).
    cfg.VOS.FEATURE_STATS = CN()
    cfg.VOS.FEATURE_STATS.COVARIANCE = "ridge"
    # Pushes between exact recomputations of the incrementally kept queue statistics.
    cfg.VOS.STATS_RECOMPUTE_PERIOD = 1000
    # Gather each step's foreground features from all workers so every worker's queues
    # stay identical (only matters with more than one process).
    cfg.VOS.SYNC_QUEUES = True
    # Score attached to every detection as `id_scores`, a name of the score registry
    # (vos_det.core.scores). Logit scores: "vos" (sigmoid of the logistic layer on the weighted energy,
    # paper eq. 8), "energy" (logsumexp of the foreground logits), "msp" (max softmax
    # probability), "max_logit". Feature scores, on the box features against the statistics of
    # the feature queues: "mahalanobis" (minus the smallest squared Mahalanobis distance to a
    # class mean under the shared covariance; Lee et al. 2018), "relative_mahalanobis" (the same
    # minus the squared distance to one class-agnostic Gaussian of all queued features; Ren et al.
    # 2021), "knn" (minus the distance of the L2-normalised feature to its VOS.KNN_K-th nearest
    # L2-normalised queued feature; Sun et al. 2022). "feature_head": the sigmoid of the
    # feature-space uncertainty head (VOS.FEATURE_HEAD). Higher = more in-distribution. Each score of
    # VOS.SCORE and VOS.EVAL.SCORES is also attached as `<name>_scores`.
    cfg.VOS.SCORE = "vos"
    # The k of the "knn" score: the distance to the k-th nearest queued feature (all classes).
    cfg.VOS.KNN_K = DEFAULT_KNN_K
    # Detections whose `id_scores` fall below this are flagged `is_ood`; None (null in YAML) =
    # no flag. Any number counts: energy and the feature scores take negative values. Take the
    # value evaluation derived (ood_results.json, id_score_thresholds; tools/demo.py
    # --ood-threshold-from).
    cfg.VOS.OOD_THRESHOLD = None

    # OOD evaluation (VOSTrainer.test, tools/evaluate_ood.py).
    cfg.VOS.EVAL = CN()
    # How the OOD numbers are computed (vos_det.evaluation.protocol): "paper" as the VOS paper's
    # released evaluation computes them (compare these with published tables): threshold from
    # COCOeval's F1 over IoU 0.50:0.95, a detection kept when its proposal's largest class
    # probability reaches it, FPR95 at the ROC point whose TPR is closest to VOS.EVAL.TPR.
    # "strict": threshold by exact F1 at IoU 0.5, a detection kept by its own class probability,
    # FPR95 at the first ROC point whose TPR reaches VOS.EVAL.TPR.
    cfg.VOS.EVAL.PROTOCOL = "paper"
    # Class probability a detection needs to take part in the OOD metrics (tested on what
    # VOS.EVAL.PROTOCOL keeps boxes by). Negative (-1.0) = derive it on the ID set, per class from
    # F1 against the ground truth, averaged over the classes, by VOS.EVAL.PROTOCOL's rule.
    # A value in [0, 1] is used as given.
    cfg.VOS.EVAL.SCORE_THRESHOLD = -1.0
    # Share of kept ID boxes at or above the score threshold at which the OOD false-positive rate
    # is read (the "95" of FPR95).
    cfg.VOS.EVAL.TPR = 0.95
    # Scores compared in the OOD table: names of the score registry (see VOS.SCORE). Keep
    # "energy": it is the score the paper's tables use, the table's paper-comparable row.
    # The feature scores ("mahalanobis", "relative_mahalanobis", "knn") are opt-in: they need
    # the class statistics in the checkpoint's feature queues, which a model trained with one of
    # them configured has (VOS or vanilla) and a model trained elsewhere (e.g. a stock Detectron2
    # Faster R-CNN) gets from tools/fit_feature_statistics.py; evaluating them on weights
    # without statistics fails, naming that tool. configs/Synthetic lists them.
    cfg.VOS.EVAL.SCORES = ("vos", "energy", "msp", "max_logit")
    # Write score histograms (ID vs OOD) and ROC curves as PNG files next to ood_results.json.
    cfg.VOS.EVAL.SAVE_PLOTS = True

    cfg.MODEL.REGNETS = CN()
    # RegNet design parameters (Radosavovic et al. 2020); defaults are RegNetX-4.0GF.
    cfg.MODEL.REGNETS.DEPTH = 23
    cfg.MODEL.REGNETS.W_A = 38.65
    cfg.MODEL.REGNETS.W_0 = 96
    cfg.MODEL.REGNETS.W_M = 2.43
    cfg.MODEL.REGNETS.GROUP_WIDTH = 40
    cfg.MODEL.REGNETS.STEM_WIDTH = 32
    # Normalisation of the RegNet backbone ("FrozenBN", "BN", "SyncBN", "GN").
    cfg.MODEL.REGNETS.NORM = "FrozenBN"
    # Stages "s1".."s4" fed to the FPN.
    cfg.MODEL.REGNETS.OUT_FEATURES = ["s1", "s2", "s3", "s4"]


def load_vos_config(
    config: str, overrides: Sequence = (), output_dir: Optional[str] = None
) -> CN:
    """A frozen, validated config: Detectron2's defaults and every ``VOS.*`` key, then
    ``config``, then the ``KEY VALUE`` ``overrides`` (and ``OUTPUT_DIR``).

    Args:
        config (str): a YAML path, or a config shipped with vos_det (e.g. "Synthetic/vos.yaml").
        overrides (Sequence): ``KEY, VALUE, ...`` for ``cfg.merge_from_list``.
        output_dir (str or None): ``OUTPUT_DIR``; None keeps the config's.

    Returns:
        CfgNode: the config.

    Raises:
        FileNotFoundError: ``config`` is neither a file nor a shipped config.
        ValueError: one line naming the problem: YAML that does not parse, an unknown key, an
            odd-length override list, a value of the wrong type, or a value that cannot work
            (:func:`~vos_det.modeling.config_checks.validate_vos_config`).
    """
    if not config:
        raise FileNotFoundError("no config file given: pass --config-file FILE")
    path = config if os.path.isfile(config) else model_zoo.get_config_file(config)
    cfg = get_cfg()
    add_vos_config(cfg)
    try:
        cfg.merge_from_file(path)
        cfg.merge_from_list(list(overrides))
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML ({' '.join(str(error).split())})") from error
    except (AssertionError, KeyError) as error:  # yacs: unknown key, odd override list
        message = error.args[0] if error.args else str(error)
        # yacs words an unknown key one way in files and another in override lists.
        message = str(message).replace("Non-existent key:", "Non-existent config key:")
        raise ValueError(f"{message} (config {path}, overrides {list(overrides)})") from error
    if output_dir is not None:
        cfg.OUTPUT_DIR = output_dir
    validate_vos_config(cfg)
    cfg.freeze()
    return cfg
