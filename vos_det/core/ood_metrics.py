"""Threshold-free and FPR@TPR metrics for separating in-distribution from OOD scores.

All scores are ID-ness scores: higher means more in-distribution. The in-distribution (ID) set is
the positive class. Everything is computed exactly with numpy (sorting and tie grouping); the
results match scikit-learn's ``roc_auc_score``, ``average_precision_score`` and ``roc_curve``.

The false-positive rate at a true-positive rate is read the way the chosen protocol
(:data:`PROTOCOLS`) reads it: "paper" at the ROC point whose TPR is closest to the target
(:func:`fpr_at_closest_tpr`), "strict" at the first point reaching it (:func:`fpr_at_tpr`).
"""

from typing import Dict, Tuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "PROTOCOLS",
    "check_protocol",
    "fpr_at_closest_tpr",
    "fpr_at_tpr",
    "fpr_key",
    "id_threshold_at_tpr",
    "ood_metrics",
    "roc_curve",
]

#: The OOD evaluation protocols (``VOS.EVAL.PROTOCOL``): "paper" computes the numbers the way the
#: VOS paper's released evaluation does (the default); "strict" keeps each detection by its own
#: class probability, derives the threshold by exact F1 at IoU 0.5 and reads FPR at the first ROC
#: point reaching the TPR. :mod:`vos_det.evaluation.protocol` describes both.
PROTOCOLS = ("paper", "strict")


def check_protocol(protocol: str) -> str:
    """Returns: ``protocol`` if it is one of :data:`PROTOCOLS`; raises ValueError otherwise."""
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"Unknown OOD evaluation protocol {protocol!r}: use one of {', '.join(PROTOCOLS)} "
            "(VOS.EVAL.PROTOCOL, or --protocol of tools/evaluate_ood.py)."
        )
    return protocol


def fpr_key(tpr: float) -> str:
    """The name of the false-positive rate read at ``tpr``: "FPR95" for 0.95, "FPR90" for 0.9.

    Args:
        tpr (float): the true-positive rate, in (0, 1].

    Returns:
        str: "FPR" followed by ``100 * tpr`` without trailing zeros.
    """
    return f"FPR{round(100 * tpr, 6):g}"


def ood_metrics(
    id_scores: ArrayLike, ood_scores: ArrayLike, tpr: float = 0.95, protocol: str = "paper"
) -> Dict[str, float]:
    """Compute FPR at a given TPR, AUROC and AUPR for ID (positive) vs. OOD (negative) scores.

    Definitions, with ``n`` ID scores and ``m`` OOD scores:

    * ``FPR95`` (named after ``tpr`` by :func:`fpr_key`): with protocol "paper", the FPR of the
      ROC point whose TPR is closest to ``tpr`` (:func:`fpr_at_closest_tpr`); with "strict", the
      smallest FPR among the ROC points whose TPR is ``>= tpr`` (:func:`fpr_at_tpr`).
    * ``AUROC``: the probability that a random ID score exceeds a random OOD score, ties counting
      one half (the Mann-Whitney U statistic divided by ``n * m``).
    * ``AUPR``: average precision with ID as the positive class, as scikit-learn's
      ``average_precision_score`` defines it: ``sum_k (R_k - R_{k-1}) * P_k`` over the distinct
      score values in decreasing order (tied scores form one step, no interpolation).

    Args:
        id_scores (array-like): (n,) ID-ness scores of the in-distribution samples.
        ood_scores (array-like): (m,) ID-ness scores of the out-of-distribution samples.
        tpr (float): true-positive rate (fraction of ID scores kept) at which the false-positive
            rate is read, in (0, 1].
        protocol (str): how the FPR is read, one of :data:`PROTOCOLS`.

    Returns:
        dict[str, float]: ``fpr_key(tpr)`` (e.g. "FPR95"), "AUROC" and "AUPR", each in percent
        (0 to 100).

    Raises:
        ValueError: if an input is not 1-D, is empty or holds NaN/Inf, if ``tpr`` is not in
            (0, 1], or if the protocol is unknown.
    """
    id_scores = _as_scores(id_scores, "id_scores")
    ood_scores = _as_scores(ood_scores, "ood_scores")
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}; pass e.g. tpr=0.95.")
    read_fpr = {"paper": fpr_at_closest_tpr, "strict": fpr_at_tpr}[check_protocol(protocol)]
    pos_counts, neg_counts = _counts_per_distinct_score(id_scores, ood_scores)
    return {
        fpr_key(tpr): 100.0 * read_fpr(id_scores, ood_scores, tpr),
        "AUROC": 100.0 * _auroc(pos_counts, neg_counts),
        "AUPR": 100.0 * _average_precision(pos_counts, neg_counts),
    }


def _as_scores(scores: ArrayLike, name: str) -> np.ndarray:
    """Convert scores to a finite, non-empty 1-D float64 array.

    Args:
        scores (array-like): the scores to check.
        name (str): argument name used in error messages.

    Returns:
        np.ndarray: (n,) float64 copy of the scores.
    """
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of scores, got shape {array.shape}; flatten it first."
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty; the metrics need at least one score per set.")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"{name} holds {bad} NaN/Inf value(s); remove or fix them first.")
    return array


def id_threshold_at_tpr(id_scores: ArrayLike, tpr: float) -> float:
    """The largest threshold ``t`` such that at least ``tpr`` of the ID scores are ``>= t``.

    Boxes scoring below it are the ones flagged OOD at that true-positive rate; FPR95 is the
    fraction of OOD scores at or above it.

    Args:
        id_scores (array-like): (n,) finite ID scores, n >= 1.
        tpr (float): required fraction of ID scores at or above the threshold, in (0, 1].

    Returns:
        float: the ``ceil(tpr * n)``-th largest ID score.
    """
    descending = np.sort(_as_scores(id_scores, "id_scores"))[::-1]
    kept_fraction = np.arange(1, descending.size + 1) / descending.size
    return float(descending[int(np.argmax(kept_fraction >= tpr))])


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float) -> float:
    """The "strict" FPR: the fraction of OOD scores at or above :func:`id_threshold_at_tpr`.

    Ties are handled exactly: every score equal to the threshold counts as accepted. This equals
    the smallest false-positive rate among the ROC points whose true-positive rate is ``>= tpr``.

    Args:
        id_scores (np.ndarray): (n,) finite ID scores, n >= 1.
        ood_scores (np.ndarray): (m,) finite OOD scores, m >= 1.
        tpr (float): the true-positive rate, in (0, 1].

    Returns:
        float: the false-positive rate, in [0, 1].
    """
    return float(np.mean(ood_scores >= id_threshold_at_tpr(id_scores, tpr)))


def fpr_at_closest_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float) -> float:
    """The "paper" FPR: the false-positive rate of the ROC point whose TPR is closest to ``tpr``.

    The ROC points are those of :func:`roc_curve`: (0, 0) (a threshold above every score), then
    one point per distinct score (ties grouped) in decreasing order of the threshold. Among points
    equally close to ``tpr`` (equal ``|TPR - tpr|`` in floating point) the first in that order is
    taken, i.e. the one with the highest threshold (lowest TPR and FPR). This is scikit-learn's
    ``roc_curve(..., drop_intermediate=False)`` read at ``argmin |tpr - target|``.

    Args:
        id_scores (np.ndarray): (n,) finite ID scores, n >= 1.
        ood_scores (np.ndarray): (m,) finite OOD scores, m >= 1.
        tpr (float): the target true-positive rate, in (0, 1].

    Returns:
        float: the false-positive rate, in [0, 1].
    """
    fprs, tprs = roc_curve(id_scores, ood_scores)
    return float(fprs[np.argmin(np.abs(tprs - tpr))])


def roc_curve(id_scores: np.ndarray, ood_scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """ROC curve of ID (positive) vs OOD (negative) scores, one point per distinct score.

    Args:
        id_scores (np.ndarray): (n,) ID-ness scores of ID boxes.
        ood_scores (np.ndarray): (m,) ID-ness scores of OOD boxes.

    Returns:
        tuple[np.ndarray, np.ndarray]: false-positive rates and true-positive rates, each (u+1,)
        from (0, 0) to (1, 1), for the thresholds ``score >= t`` over the u distinct scores in
        decreasing order.
    """
    thresholds = np.unique(np.concatenate([id_scores, ood_scores]))[::-1]
    id_sorted, ood_sorted = np.sort(id_scores), np.sort(ood_scores)
    tpr = (len(id_sorted) - np.searchsorted(id_sorted, thresholds, side="left")) / len(id_sorted)
    fpr = (len(ood_sorted) - np.searchsorted(ood_sorted, thresholds, side="left")) / len(ood_sorted)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def _counts_per_distinct_score(
    id_scores: np.ndarray, ood_scores: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Count ID and OOD samples per distinct score value.

    Args:
        id_scores (np.ndarray): (n,) ID scores.
        ood_scores (np.ndarray): (m,) OOD scores.

    Returns:
        tuple[np.ndarray, np.ndarray]: (u,) ID counts and (u,) OOD counts, one entry per distinct
            score value in increasing order of the value.
    """
    scores = np.concatenate([id_scores, ood_scores])
    _, group = np.unique(scores, return_inverse=True)
    num_groups = int(group.max()) + 1
    pos_counts = np.bincount(group[: id_scores.size], minlength=num_groups)
    neg_counts = np.bincount(group[id_scores.size :], minlength=num_groups)
    return pos_counts.astype(np.float64), neg_counts.astype(np.float64)


def _auroc(pos_counts: np.ndarray, neg_counts: np.ndarray) -> float:
    """Area under the ROC curve, ties counted half.

    Args:
        pos_counts (np.ndarray): (u,) ID counts per distinct score, increasing score order.
        neg_counts (np.ndarray): (u,) OOD counts per distinct score, same order.

    Returns:
        float: AUROC in [0, 1].
    """
    negatives_below = np.cumsum(neg_counts) - neg_counts
    wins = np.sum(pos_counts * (negatives_below + 0.5 * neg_counts))
    return float(wins / (pos_counts.sum() * neg_counts.sum()))


def _average_precision(pos_counts: np.ndarray, neg_counts: np.ndarray) -> float:
    """Step-wise average precision with ID as the positive class.

    Args:
        pos_counts (np.ndarray): (u,) ID counts per distinct score, increasing score order.
        neg_counts (np.ndarray): (u,) OOD counts per distinct score, same order.

    Returns:
        float: average precision in [0, 1].
    """
    true_positives = np.cumsum(pos_counts[::-1])
    false_positives = np.cumsum(neg_counts[::-1])
    precision = true_positives / (true_positives + false_positives)
    recall_gain = pos_counts[::-1] / true_positives[-1]
    return float(np.sum(recall_gain * precision))
