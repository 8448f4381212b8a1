"""VOS configuration keys: :func:`add_vos_config` adds them, :func:`validate_vos_config` checks them."""

from detectron2.config import CfgNode as CN
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY

from .evaluation.protocol import PROTOCOLS
from .outlier_synthesis import SYNTHESIS_METHODS
from .scores import DEFAULT_KNN_K, get_score, score_names, scores_requiring
from .spectral_penalty import SINGULAR_VALUE_PENALTIES


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
    # Where the virtual outliers come from (vos_det.outlier_synthesis): "gaussian" (the paper:
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

    # The uncertainty head on the weighted energy (vos_det.energy.EnergyUncertaintyHead), whose
    # sigmoid is the "vos" score. HIDDEN_DIM 0: the paper's logistic layer on -E; > 0: an MLP
    # 1 -> HIDDEN_DIM -> 1 (ReLU), the VOS authors' MLP variant (512 there), which can tell a
    # band of energies from both of its sides.
    cfg.VOS.ENERGY_HEAD = CN()
    cfg.VOS.ENERGY_HEAD.HIDDEN_DIM = 0

    # FEVER-OOD (vos_det.spectral_penalty): shrink the classifier's null space, in which offsets
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

    # A feature-space uncertainty head (vos_det.feature_head, as in NPOS): an MLP
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
    # Ridge added to the shared covariance: Sigma + COV_EPS * I.
    cfg.VOS.COV_EPS = 1e-4
    # Pushes between exact recomputations of the incrementally kept queue statistics.
    cfg.VOS.STATS_RECOMPUTE_PERIOD = 1000
    # Gather each step's foreground features from all workers so every worker's queues
    # stay identical (only matters with more than one process).
    cfg.VOS.SYNC_QUEUES = True
    # Score attached to every detection as `id_scores`, a name of the score registry
    # (vos_det.scores). Logit scores: "vos" (sigmoid of the logistic layer on the weighted energy,
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


def validate_vos_config(cfg: CN) -> None:
    """Raise ``ValueError`` naming the key when a ``VOS.*`` value cannot work."""
    if "VOS" not in cfg:
        raise ValueError(
            "the config has no VOS section: call vos_det.add_vos_config(cfg) before "
            "merge_from_file when using ROI_HEADS.NAME 'VOSROIHeads'"
        )
    vos = cfg.VOS
    names = score_names()
    checks = [
        (vos.QUEUE_SIZE >= 2, "VOS.QUEUE_SIZE", "must be >= 2 to estimate a covariance"),
        (vos.START_ITER >= 0, "VOS.START_ITER", "must be >= 0"),
        (
            0 <= vos.MIN_QUEUE_FILL <= vos.QUEUE_SIZE,
            "VOS.MIN_QUEUE_FILL",
            "must be in [0, VOS.QUEUE_SIZE]",
        ),
        (vos.NUM_SELECT >= 1, "VOS.NUM_SELECT", "must be >= 1"),
        (vos.NUM_CANDIDATES >= vos.NUM_SELECT, "VOS.NUM_CANDIDATES", "must be >= VOS.NUM_SELECT"),
        (vos.LOSS_WEIGHT >= 0, "VOS.LOSS_WEIGHT", "must be >= 0"),
        (vos.COV_EPS > 0, "VOS.COV_EPS", "must be > 0"),
        (vos.STATS_RECOMPUTE_PERIOD >= 1, "VOS.STATS_RECOMPUTE_PERIOD", "must be >= 1"),
        (vos.SCORE in names, "VOS.SCORE", f"must be one of {', '.join(names)}"),
        (vos.KNN_K >= 1, "VOS.KNN_K", "must be >= 1"),
        (vos.CROP_FEATURES.SIZE >= 16, "VOS.CROP_FEATURES.SIZE", "must be >= 16 pixels"),
        (vos.CROP_FEATURES.MARGIN >= 0, "VOS.CROP_FEATURES.MARGIN", "must be >= 0"),
        (vos.CROP_FEATURES.QUEUE_SIZE >= 2, "VOS.CROP_FEATURES.QUEUE_SIZE", "must be >= 2"),
        (
            vos.SYNTHESIS in SYNTHESIS_METHODS,
            "VOS.SYNTHESIS",
            f"must be one of {', '.join(SYNTHESIS_METHODS)}",
        ),
        (vos.BOUNDARY.K >= 1, "VOS.BOUNDARY.K", "must be >= 1"),
        (
            vos.SYNTHESIS != "boundary" or vos.BOUNDARY.K < vos.QUEUE_SIZE,
            "VOS.BOUNDARY.K",
            "must be < VOS.QUEUE_SIZE (a class needs K + 1 queued vectors)",
        ),
        (vos.BOUNDARY.NUM_BOUNDARY >= 1, "VOS.BOUNDARY.NUM_BOUNDARY", "must be >= 1"),
        (vos.BOUNDARY.NOISE_SCALE > 0, "VOS.BOUNDARY.NOISE_SCALE", "must be > 0"),
        (vos.ENERGY_HEAD.HIDDEN_DIM >= 0, "VOS.ENERGY_HEAD.HIDDEN_DIM", "must be >= 0"),
        (vos.FEVER.PROJECTION_DIM >= 0, "VOS.FEVER.PROJECTION_DIM", "must be >= 0"),
        (
            vos.FEVER.PENALTY in ("none", *SINGULAR_VALUE_PENALTIES),
            "VOS.FEVER.PENALTY",
            f"must be one of none, {', '.join(SINGULAR_VALUE_PENALTIES)}",
        ),
        (vos.FEVER.PENALTY_WEIGHT >= 0, "VOS.FEVER.PENALTY_WEIGHT", "must be >= 0"),
        (vos.FEATURE_HEAD.HIDDEN_DIM >= 0, "VOS.FEATURE_HEAD.HIDDEN_DIM", "must be >= 0"),
        (vos.FEATURE_HEAD.LOSS_WEIGHT >= 0, "VOS.FEATURE_HEAD.LOSS_WEIGHT", "must be >= 0"),
        (
            vos.FEATURE_HEAD.HIDDEN_DIM == 0 or vos.ENABLED,
            "VOS.FEATURE_HEAD.HIDDEN_DIM",
            "needs VOS.ENABLED True: the feature head learns from the virtual outliers",
        ),
        (
            vos.EVAL.SCORE_THRESHOLD <= 1,
            "VOS.EVAL.SCORE_THRESHOLD",
            "must be negative (derive it from the ID set) or a class probability in [0, 1]",
        ),
        (
            vos.EVAL.PROTOCOL in PROTOCOLS,
            "VOS.EVAL.PROTOCOL",
            f"must be one of {', '.join(PROTOCOLS)}",
        ),
        (0 < vos.EVAL.TPR <= 1, "VOS.EVAL.TPR", "must be in (0, 1]"),
        (
            len(vos.EVAL.SCORES) > 0
            and len(set(vos.EVAL.SCORES)) == len(vos.EVAL.SCORES)
            and set(vos.EVAL.SCORES) <= set(names),
            "VOS.EVAL.SCORES",
            f"must list distinct names among {', '.join(names)}",
        ),
    ]
    if vos.OOD_THRESHOLD is not None and not isinstance(vos.OOD_THRESHOLD, (int, float)):
        raise ValueError(
            f"VOS.OOD_THRESHOLD={vos.OOD_THRESHOLD!r} must be a number, or None for no flag"
        )
    if vos.SCORE in names and vos.OOD_THRESHOLD is not None:
        low, high = get_score(vos.SCORE).value_range
        checks.append(
            (
                low <= vos.OOD_THRESHOLD <= high,
                "VOS.OOD_THRESHOLD",
                f"is outside the range [{low:g}, {high:g}] of the {vos.SCORE} score (VOS.SCORE): "
                "no box could be flagged, or every box would be; take the threshold "
                "evaluation derived (ood_results.json, id_score_thresholds)",
            )
        )
    for ok, key, requirement in checks:
        if not ok:
            raise ValueError(f"{key}={_value(cfg, key)!r} {requirement}")
    _check_feature_scores(cfg)


def _check_feature_scores(cfg: CN) -> None:
    """Raise ``ValueError`` when a configured score reads feature queues (or a feature head) the
    model cannot have, or when the queues can never hold VOS.KNN_K vectors for ``knn``."""
    heads = cfg.MODEL.ROI_HEADS.NAME
    capacity = cfg.MODEL.ROI_HEADS.NUM_CLASSES * cfg.VOS.QUEUE_SIZE
    for key in ("VOS.SCORE", "VOS.EVAL.SCORES"):
        value = _value(cfg, key)
        configured = [value] if isinstance(value, str) else value
        needing = scores_requiring("queues", configured)
        if needing and not _has_feature_queues(heads):
            raise ValueError(
                f"{key}={value!r}: {', '.join(needing)} read(s) the per-class feature queues, "
                f"which MODEL.ROI_HEADS.NAME={heads!r} does not have: set MODEL.ROI_HEADS.NAME "
                "'VOSROIHeads' (for weights trained with other heads, fit the statistics with "
                f"tools/fit_feature_statistics.py), or remove them from {key}."
            )
        if scores_requiring("feature_head", configured) and cfg.VOS.FEATURE_HEAD.HIDDEN_DIM == 0:
            raise ValueError(
                f"{key}={value!r}: the feature_head score needs the feature-space uncertainty "
                "head: set VOS.FEATURE_HEAD.HIDDEN_DIM > 0 (with VOS.ENABLED), or remove it "
                f"from {key}."
            )
        if "knn" in needing and cfg.VOS.KNN_K > capacity:
            raise ValueError(
                f"VOS.KNN_K={cfg.VOS.KNN_K!r} exceeds the {capacity} vectors the feature queues "
                "can hold (MODEL.ROI_HEADS.NUM_CLASSES x VOS.QUEUE_SIZE) for the knn score in "
                f"{key}: lower VOS.KNN_K or raise VOS.QUEUE_SIZE."
            )
        _check_crop_scores(cfg, key, value, scores_requiring("crop_features", configured))


_RESNET_BACKBONES = ("build_resnet_backbone", "build_resnet_fpn_backbone")


def _check_crop_scores(cfg: CN, key: str, value, needing) -> None:
    """Raise ``ValueError`` when the crop scores ``needing`` (configured in ``key``) cannot
    work: other heads than VOSROIHeads, a backbone that is not a ResNet, no pretrained weights
    for the crop encoder, or crop queues too small for ``crop_knn``."""
    if not needing:
        return
    crops = cfg.VOS.CROP_FEATURES
    problems = [
        (
            _has_feature_queues(cfg.MODEL.ROI_HEADS.NAME),
            f"need MODEL.ROI_HEADS.NAME 'VOSROIHeads' (got {cfg.MODEL.ROI_HEADS.NAME!r})",
        ),
        (
            cfg.MODEL.BACKBONE.NAME in _RESNET_BACKBONES,
            f"embed crops with a ResNet like the backbone, but MODEL.BACKBONE.NAME is "
            f"{cfg.MODEL.BACKBONE.NAME!r} (supported: {', '.join(_RESNET_BACKBONES)})",
        ),
        (
            bool(crops.WEIGHTS or cfg.MODEL.WEIGHTS),
            "embed crops with a pretrained ResNet: set MODEL.WEIGHTS or "
            "VOS.CROP_FEATURES.WEIGHTS to pretrained weights",
        ),
        (
            "crop_knn" not in needing
            or cfg.VOS.KNN_K <= cfg.MODEL.ROI_HEADS.NUM_CLASSES * crops.QUEUE_SIZE,
            f"crop_knn needs VOS.KNN_K={cfg.VOS.KNN_K} <= MODEL.ROI_HEADS.NUM_CLASSES x "
            "VOS.CROP_FEATURES.QUEUE_SIZE queued crop features",
        ),
    ]
    for ok, problem in problems:
        if not ok:
            raise ValueError(f"{key}={value!r}: {', '.join(needing)} {problem}.")


def _has_feature_queues(roi_heads_name: str) -> bool:
    """Whether the registered ROI heads ``roi_heads_name`` are :class:`VOSROIHeads` (or derived),
    the heads whose predictor keeps feature queues when a configured score reads them."""
    from .modeling.roi_heads import VOSROIHeads  # here: the modeling package imports this module

    return roi_heads_name in ROI_HEADS_REGISTRY and issubclass(
        ROI_HEADS_REGISTRY.get(roi_heads_name), VOSROIHeads
    )


def _value(cfg: CN, key: str):
    """The value of the dotted ``key`` in ``cfg``."""
    value = cfg
    for part in key.split("."):
        value = value[part]
    return value
