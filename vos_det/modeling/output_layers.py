"""VOS box predictor: Fast R-CNN output layers plus feature queues and the uncertainty loss."""

import logging
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from .config_checks import validate_vos_config
from .crop_encoder import crop_feature_dim
from .detection_scores import attach_scores, proposal_rows
from ..core.energy import EnergyUncertaintyHead
from ..core.feature_head import FeatureUncertaintyHead
from ..core.outlier_synthesis import OutlierSynthesizer
from ..core.queues import ClassFeatureQueues
from ..core.scores import ScoreInputs, scores_requiring
from ..core.spectral_penalty import singular_value_penalty
from .distributed import push_rows
from .outlier_classes import OutlierClasses, training_class_names
from .uncertainty_metrics import log_feature_head_metrics, log_uncertainty_metrics

logger = logging.getLogger(__name__)

__all__ = ["VOSOutputLayers", "queue_options"]


def queue_options(cfg) -> Dict[str, object]:
    """The keyword arguments of every :class:`ClassFeatureQueues` a detector keeps: the ridge
    ``VOS.COV_EPS``, ``VOS.STATS_RECOMPUTE_PERIOD`` and ``VOS.FEATURE_STATS.COVARIANCE``."""
    return dict(
        eps=cfg.VOS.COV_EPS,
        recompute_every=cfg.VOS.STATS_RECOMPUTE_PERIOD,
        covariance_estimator=cfg.VOS.FEATURE_STATS.COVARIANCE,
    )


class VOSOutputLayers(FastRCNNOutputLayers):
    """:class:`FastRCNNOutputLayers` that also learns to tell known objects from unknown ones.

    Training (``losses``) pushes the features of foreground proposals into per-class queues and,
    from ``uncertainty_start_iter`` on, synthesises virtual outliers from the queues (``synthesizer``:
    the class Gaussians' fringe, or the queues' boundary) and adds ``loss_uncertainty``: a
    logistic layer (or MLP) on the weighted energy that separates real foreground proposals (ID)
    from the outliers (OOD); with a feature head also ``loss_feature_uncertainty``, the same
    task on the features themselves. Without VOS, the queues exist (and fill in training, with
    no loss) only when a configured score reads them. Options of FEVER-OOD: a projection of the
    box feature before the classifier (the queues then hold projected features) and
    ``loss_singular_value`` on the classifier weight's spectrum.

    Inference (``inference``) returns Detectron2's detections with extra fields, taken from the
    same proposals that survived NMS:

    * ``fg_logits`` (R, K): the foreground class logits;
    * ``max_class_probs`` (R,): the largest foreground class probability of the detection's
      proposal (its K+1 logits' softmax, max over the K foreground classes; ``>= scores``), by
      which the paper's OOD protocol keeps boxes;
    * ``<name>_scores`` (R,): every score of ``score_names`` (see :mod:`vos_det.core.scores`), e.g.
      ``vos_scores``, the trained VOS ID-ness (paper eq. 8); higher = more in-distribution;
    * ``id_scores`` (R,): the score ``score_name``;
    * ``is_ood`` (R,) bool: only when a threshold is set, True unless
      ``id_scores >= ood_threshold`` (so a NaN score is never taken for a known object).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        vos_enabled: bool,
        queue_size: int,
        uncertainty_start_iter: int,
        min_queue_fill: int,
        synthesizer: OutlierSynthesizer,
        uncertainty_loss_weight: float,
        energy_head_hidden_dim: int = 0,
        projection_dim: int = 0,
        penalty: str = "none",
        penalty_weight: float = 0.0,
        feature_head_hidden_dim: int = 0,
        feature_head_normalize: bool = True,
        feature_head_loss_weight: float = 0.0,
        queue_options: Mapping[str, object],
        sync_queues: bool,
        score_name: str,
        score_names: Sequence[str],
        ood_threshold: Optional[float],
        knn_k: int,
        crop_feature_dim: int = 0,
        crop_queue_size: int = 0,
        class_names: Optional[Sequence[str]] = None,
        **kwargs,
    ):
        """
        Args:
            input_shape (ShapeSpec): shape of the box head's output features.
            vos_enabled (bool): train the uncertainty branch; False = vanilla detector (no
                uncertainty loss, the uncertainty head frozen at its initialisation, and feature
                queues only when a score of ``score_names`` reads them: then ``losses`` fills
                them with the foreground features, statistics only).
            queue_size (int): feature vectors kept per class.
            uncertainty_start_iter (int): first iteration (event storage's ``iter``) with the
                uncertainty loss active.
            min_queue_fill (int): a class gets outliers once it holds this many vectors;
                0 = only when every class queue is full.
            synthesizer (OutlierSynthesizer): draws the virtual outliers from the queues.
            uncertainty_loss_weight (float): weight of ``loss_uncertainty``.
            energy_head_hidden_dim (int): 0 = logistic layer on the energy; > 0 = MLP width.
            projection_dim (int): > 0: project the box feature to this dimension before the
                classifier (FEVER-OOD); 0 = none.
            penalty (str): "none" or a kind of :func:`singular_value_penalty` on the foreground
                classifier weight, added as ``loss_singular_value``.
            penalty_weight (float): weight of ``loss_singular_value``.
            feature_head_hidden_dim (int): > 0: train a :class:`FeatureUncertaintyHead` of this
                width (needs ``vos_enabled``); 0 = none.
            feature_head_normalize (bool): L2-normalise the feature head's input.
            feature_head_loss_weight (float): weight of ``loss_feature_uncertainty``.
            queue_options (Mapping): keyword arguments of :class:`ClassFeatureQueues` for the
                box and crop queues: ``eps`` (the ridge), ``recompute_every`` and
                ``covariance_estimator``.
            sync_queues (bool): gather foreground features from every worker before queueing.
            score_name (str): registered score stored as ``id_scores``.
            score_names (Sequence[str]): registered scores attached as ``<name>_scores``
                (``score_name`` is always among them).
            ood_threshold (float or None): flag ``is_ood`` below this score; None = no flag.
            knn_k (int): the k of the ``knn`` scores (distance to the k-th nearest queued vector).
            crop_feature_dim (int): C of the box-crop features (VOS.CROP_FEATURES); with a score
                of ``score_names`` that reads them, ``crop_queues`` keep ``crop_queue_size`` of
                them per class (filled by :meth:`push_crop_features`).
            crop_queue_size (int): crop features kept per class.
            class_names (Sequence[str] or None): the K class names, for messages.
            kwargs: arguments of :class:`FastRCNNOutputLayers`.
        """
        super().__init__(input_shape, **kwargs)
        self.vos_enabled = vos_enabled
        self.uncertainty_start_iter = uncertainty_start_iter
        self.synthesizer = synthesizer
        self.outlier_classes = OutlierClasses(
            min_queue_fill, synthesizer.min_class_count(), class_names
        )
        self.uncertainty_loss_weight = uncertainty_loss_weight
        self.penalty = penalty
        self.penalty_weight = penalty_weight
        self.feature_head_loss_weight = feature_head_loss_weight
        self.sync_queues = sync_queues
        self.score_name = score_name
        self.score_names = tuple(dict.fromkeys([score_name, *score_names]))
        self.ood_threshold = ood_threshold
        self.knn_k = knn_k
        self.projection: Optional[nn.Linear] = None
        if projection_dim > 0:
            self.projection = nn.Linear(self.cls_score.in_features, projection_dim)
            self.cls_score = nn.Linear(projection_dim, self.cls_score.out_features)
            nn.init.normal_(self.cls_score.weight, std=0.01)  # as FastRCNNOutputLayers
            nn.init.constant_(self.cls_score.bias, 0)
        feature_dim = self.cls_score.in_features
        self.uncertainty = EnergyUncertaintyHead(self.num_classes, energy_head_hidden_dim)
        self.feature_head: Optional[FeatureUncertaintyHead] = None
        if feature_head_hidden_dim > 0:
            if not vos_enabled:
                raise ValueError("the feature head learns from virtual outliers: enable VOS")
            self.feature_head = FeatureUncertaintyHead(
                feature_dim, feature_head_hidden_dim, feature_head_normalize
            )
        self.queues: Optional[ClassFeatureQueues] = None
        if vos_enabled or scores_requiring("queues", self.score_names):
            self.queues = ClassFeatureQueues(
                self.num_classes, queue_size, feature_dim, **queue_options
            )
        self.crop_queues: Optional[ClassFeatureQueues] = None
        if scores_requiring("crop_features", self.score_names):
            self.crop_queues = ClassFeatureQueues(
                self.num_classes, crop_queue_size, crop_feature_dim, **queue_options
            )
        if not vos_enabled:
            self.uncertainty.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg, input_shape):
        validate_vos_config(cfg)
        ret = super().from_config(cfg, input_shape)
        ret.update(
            vos_enabled=cfg.VOS.ENABLED,
            queue_size=cfg.VOS.QUEUE_SIZE,
            uncertainty_start_iter=cfg.VOS.START_ITER,
            min_queue_fill=cfg.VOS.MIN_QUEUE_FILL,
            synthesizer=OutlierSynthesizer(
                cfg.VOS.SYNTHESIS,
                cfg.VOS.NUM_CANDIDATES,
                cfg.VOS.NUM_SELECT,
                cfg.VOS.BOUNDARY.K,
                cfg.VOS.BOUNDARY.NUM_BOUNDARY,
                cfg.VOS.BOUNDARY.NOISE_SCALE,
            ),
            uncertainty_loss_weight=cfg.VOS.LOSS_WEIGHT,
            energy_head_hidden_dim=cfg.VOS.ENERGY_HEAD.HIDDEN_DIM,
            projection_dim=cfg.VOS.FEVER.PROJECTION_DIM,
            penalty=cfg.VOS.FEVER.PENALTY,
            penalty_weight=cfg.VOS.FEVER.PENALTY_WEIGHT,
            feature_head_hidden_dim=cfg.VOS.FEATURE_HEAD.HIDDEN_DIM,
            feature_head_normalize=cfg.VOS.FEATURE_HEAD.NORMALIZE,
            feature_head_loss_weight=cfg.VOS.FEATURE_HEAD.LOSS_WEIGHT,
            queue_options=queue_options(cfg),
            sync_queues=cfg.VOS.SYNC_QUEUES,
            score_name=cfg.VOS.SCORE,
            score_names=cfg.VOS.EVAL.SCORES,
            ood_threshold=cfg.VOS.OOD_THRESHOLD,
            knn_k=cfg.VOS.KNN_K,
            crop_feature_dim=crop_feature_dim(cfg),
            crop_queue_size=cfg.VOS.CROP_FEATURES.QUEUE_SIZE,
            class_names=training_class_names(cfg),
        )
        return ret

    # ---------------------------------------------------------------- training

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Class scores (R, K+1) from :meth:`classifier_features` and box deltas from the full
        (R, D) box features, as :class:`FastRCNNOutputLayers` without a projection."""
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        return self.cls_score(self.classifier_features(x)), self.bbox_pred(x)

    def classifier_features(self, box_features: torch.Tensor) -> torch.Tensor:
        """The features the classifier reads, queued and scored: (R, D') of (R, D, ...) box
        features (D' = ``VOS.FEVER.PROJECTION_DIM`` with a projection, else D)."""
        features = box_features.flatten(1)
        return self.projection(features) if self.projection is not None else features

    def losses(
        self,
        predictions: Tuple[torch.Tensor, torch.Tensor],
        proposals: List[Instances],
        box_features: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Detectron2's ``loss_cls`` and ``loss_box_reg``; with VOS ``loss_uncertainty`` (and
        ``loss_feature_uncertainty`` with a feature head); ``loss_singular_value`` with a
        FEVER penalty.

        With queues, the foreground proposals' classifier features go into them (with VOS or,
        for the feature scores, without).

        Args:
            predictions: ``(scores (R, K+1), deltas)`` from :meth:`forward`.
            proposals (list[Instances]): the sampled proposals with ``gt_classes``.
            box_features (Tensor): (R, D) the box head's features that produced ``predictions``;
                required with queues (:class:`VOSROIHeads` passes them).
        """
        losses = super().losses(predictions, proposals)
        if self.penalty != "none":
            weight = self.cls_score.weight[: self.num_classes]
            penalty = singular_value_penalty(weight, self.penalty)
            losses["loss_singular_value"] = self.penalty_weight * penalty
            get_event_storage().put_scalar("vos/singular_value_penalty", penalty.item())
        if self.queues is None:
            return losses
        if box_features is None:
            raise ValueError(
                "VOSOutputLayers.losses needs the box features to fill its queues; "
                "use ROI_HEADS.NAME 'VOSROIHeads', which passes them"
            )
        scores = predictions[0]
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        foreground = (gt_classes >= 0) & (gt_classes < self.num_classes)
        fg_features = self.classifier_features(box_features)[foreground]
        push_rows(self.queues, fg_features, gt_classes[foreground], self.sync_queues)
        if not self.vos_enabled:
            self._log_queue_fill(get_event_storage())
            return losses
        losses.update(self._uncertainty_losses(scores[foreground, : self.num_classes], fg_features))
        return losses

    def push_crop_features(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Queue (N, C) box-crop features of ground-truth boxes with their (N,) classes."""
        push_rows(self.crop_queues, features, labels, self.sync_queues)

    def _uncertainty_losses(
        self, fg_logits: torch.Tensor, fg_features: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """The weighted binary cross-entropies of real foreground (ID) vs virtual outliers (OOD):
        ``loss_uncertainty`` on the energy, ``loss_feature_uncertainty`` on the features.

        Before ``uncertainty_start_iter`` or while the queues are not ready there are no
        outliers; the terms are then the ID halves alone with weight 0, so the uncertainty
        parameters still take part in every step's graph (what DDP without
        ``find_unused_parameters`` requires).

        Args:
            fg_logits (Tensor): (F, K) foreground logits of the foreground proposals.
            fg_features (Tensor): (F, D') their classifier features (already queued).
        """
        storage = get_event_storage()
        outliers = fg_features.new_zeros((0, fg_features.shape[1]))
        if storage.iter >= self.uncertainty_start_iter:
            classes = self.outlier_classes(self.queues, storage.iter)
            if bool(classes.any()):
                outliers = self.synthesizer(self.queues, classes).to(fg_features.dtype)
        active = outliers.shape[0] > 0
        self._log_queue_fill(storage)
        storage.put_scalar("vos/active", float(active))
        if fg_features.shape[0] + outliers.shape[0] == 0:
            names = ["loss_uncertainty"] + ["loss_feature_uncertainty"] * (
                self.feature_head is not None
            )
            return {name: fg_logits.new_zeros(()) for name in names}
        id_energy = self.uncertainty.energy(fg_logits)
        ood_energy = self.uncertainty.energy(self.cls_score(outliers)[:, : self.num_classes])
        loss = self.uncertainty.loss(id_energy, ood_energy)
        log_uncertainty_metrics(storage, self.uncertainty, id_energy, ood_energy, loss)
        weight = self.uncertainty_loss_weight if active else 0.0
        losses = {"loss_uncertainty": weight * loss}
        if self.feature_head is not None:
            feature_loss = self.feature_head.loss(fg_features, outliers)
            log_feature_head_metrics(
                storage, self.feature_head, fg_features, outliers, feature_loss
            )
            weight = self.feature_head_loss_weight if active else 0.0
            losses["loss_feature_uncertainty"] = weight * feature_loss
        return losses

    def _log_queue_fill(self, storage) -> None:
        fill = self.queues.fill_counts().float() / self.queues.capacity
        storage.put_scalar("vos/queue_fill_min", fill.min().item())
        storage.put_scalar("vos/queue_fill_mean", fill.mean().item())

    # ---------------------------------------------------------------- inference

    def inference(
        self,
        predictions: Tuple[torch.Tensor, torch.Tensor],
        proposals: List[Instances],
        box_features: Optional[torch.Tensor] = None,
        detection_inputs: Optional[Callable[[int, torch.Tensor], Dict[str, object]]] = None,
    ) -> Tuple[List[Instances], List[torch.Tensor]]:
        """Detectron2's detections, each with ``fg_logits``, ``max_class_probs``,
        ``<name>_scores`` of every score, ``id_scores`` (and ``is_ood`` when a threshold is set),
        from the proposals NMS kept.

        Args:
            predictions: ``(scores (R, K+1), deltas)`` from :meth:`forward`.
            proposals (list[Instances]): the proposals of every image.
            box_features (Tensor or None): (R, D) the box head's features of the proposals;
                :class:`VOSROIHeads` passes them, and scores that read them need them (they
                read :meth:`classifier_features`).
            detection_inputs (callable or None): ``detection_inputs(i, boxes)`` -> more
                :class:`ScoreInputs` fields for image ``i``'s (R_i, 4) detected boxes (the crop
                and layer features, and the layer queues; :class:`VOSROIHeads` passes them).
        """
        instances, kept = super().inference(predictions, proposals)
        scores, deltas = predictions
        sizes = [len(p) for p in proposals]
        features = (
            self.classifier_features(box_features).split(sizes)
            if box_features is not None
            else None
        )
        # The probabilities Detectron2 took the detections' ``scores`` from: (R_i, K+1) per image.
        probs = self.predict_probs(predictions, proposals)
        for index, (result, kept_rows, logits, image_probs, image_deltas) in enumerate(
            zip(instances, kept, scores.split(sizes), probs, deltas.split(sizes))
        ):
            rows = proposal_rows(kept_rows, logits, image_deltas)
            result.max_class_probs = image_probs[rows, : self.num_classes].max(dim=1).values
            inputs = ScoreInputs(
                fg_logits=logits[rows, : self.num_classes],
                box_features=features[index][rows] if features is not None else None,
                uncertainty=self.uncertainty,
                queues=self.queues,
                feature_head=self.feature_head,
                crop_queues=self.crop_queues,
                knn_k=self.knn_k,
                **(detection_inputs(index, result.pred_boxes.tensor) if detection_inputs else {}),
            )
            attach_scores(result, inputs, self.score_names, self.score_name, self.ood_threshold)
        return instances, kept

    # ---------------------------------------------------------------- checkpoints

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        missing = [
            name
            for name in ("queues", "crop_queues", "uncertainty", "feature_head")
            if getattr(self, name) is not None
            and not any(key.startswith(f"{prefix}{name}.") for key in state_dict)
        ]
        if missing:
            logger.info(
                "The checkpoint has no VOS state (%s) for %s: feature queues start empty and "
                "uncertainty heads keep their initialisation.",
                ", ".join(missing),
                prefix.rstrip("."),
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
