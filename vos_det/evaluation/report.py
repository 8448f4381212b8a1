"""Files of the OOD evaluation: per-box score arrays, ``ood_results.json`` and PNG plots.

Layout of an evaluation folder (``OUTPUT_DIR/inference``)::

    scores_<dataset>.npz     per-box arrays of every test set (see ``BoxScores``)
    ood_results.json         the protocol's results (``ProtocolResult.to_dict``)
    ood_plots/hist_<score>.png   score histograms, ID vs every OOD set (kept boxes)
    ood_plots/roc_<dataset>.png  ROC curves of every score, ID vs one OOD set

Plots are drawn on matplotlib's Agg canvas without pyplot, so no global backend is changed.
"""

import json
import logging
import os
from typing import List, Mapping, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .ood_evaluator import BoxScores
from .protocol import ProtocolResult, keep_boxes

__all__ = [
    "OOD_RESULTS_FILE",
    "load_box_scores",
    "plot_roc_curves",
    "plot_score_histograms",
    "read_ood_results",
    "roc_curve",
    "save_box_scores",
    "scores_file",
    "write_ood_results",
]

logger = logging.getLogger(__name__)

OOD_RESULTS_FILE = "ood_results.json"
PLOTS_FOLDER = "ood_plots"


def scores_file(folder: str, dataset: str) -> str:
    """Returns: the path of a dataset's per-box arrays in an evaluation folder."""
    return os.path.join(folder, f"scores_{dataset}.npz")


def save_box_scores(path: str, box_scores: BoxScores) -> None:
    """Write per-box arrays to an ``.npz`` file (no pickling), creating its folder.

    Args:
        path (str): output file.
        box_scores (BoxScores): the arrays.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **box_scores)


def load_box_scores(path: str) -> BoxScores:
    """Read per-box arrays written by :func:`save_box_scores`.

    Args:
        path (str): the ``.npz`` file.

    Returns:
        BoxScores: the arrays.

    Raises:
        FileNotFoundError: if the file does not exist.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Score file not found: {path}. VOSTrainer.test (tools/train_net.py --eval-only) "
            "writes one per test set into OUTPUT_DIR/inference."
        )
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def write_ood_results(path: str, result: ProtocolResult) -> None:
    """Write a run's OOD results as JSON.

    Args:
        path (str): output file, normally ``<folder>/ood_results.json``.
        result (ProtocolResult): the results.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result.to_dict(), f, indent=2, allow_nan=False)


def read_ood_results(path: str) -> ProtocolResult:
    """Read results written by :func:`write_ood_results`.

    Args:
        path (str): the JSON file.

    Returns:
        ProtocolResult: the results.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not valid JSON or not an OOD results file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found. VOSTrainer.test (tools/train_net.py --eval-only) writes it into "
            "OUTPUT_DIR/inference when DATASETS.TEST holds an ID set and OOD sets."
        )
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}).") from e
    return ProtocolResult.from_dict(data)


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


def _save(figure: Figure, path: str) -> None:
    """Render a figure on an Agg canvas into a PNG file."""
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)


def plot_score_histograms(
    folder: str,
    result: ProtocolResult,
    id_box_scores: BoxScores,
    ood_box_scores: Mapping[str, BoxScores],
) -> List[str]:
    """Draw, per score, the density histograms of the kept ID boxes and each OOD set's kept boxes.

    Args:
        folder (str): evaluation folder; the PNGs go to its ``ood_plots`` subfolder.
        result (ProtocolResult): the run's results (threshold, scores, set names).
        id_box_scores (BoxScores): all boxes of the ID set.
        ood_box_scores (Mapping[str, BoxScores]): all boxes of every OOD set.

    Returns:
        list[str]: the written files.
    """
    os.makedirs(os.path.join(folder, PLOTS_FOLDER), exist_ok=True)
    kept = {result.id_dataset: keep_boxes(id_box_scores, result.threshold.value)}
    kept.update(
        {name: keep_boxes(ood_box_scores[name], result.threshold.value) for name in result.ood}
    )
    kept = {name: arrays for name, arrays in kept.items() if len(arrays["class_prob"])}
    paths = []
    for score in result.scores:
        values = np.concatenate([arrays[score] for arrays in kept.values()])
        bins = np.histogram_bin_edges(values, bins=50)
        figure = Figure(figsize=(6, 4))
        axes = figure.add_subplot()
        for name, arrays in kept.items():
            role = "ID" if name == result.id_dataset else "OOD"
            axes.hist(
                arrays[score],
                bins=bins,
                density=True,
                histtype="step",
                label=f"{role} {name} ({len(arrays[score])})",
            )
        axes.set_xlabel(f"{score} score (higher = more in-distribution)")
        axes.set_ylabel("density")
        axes.set_title(f"{score}: kept boxes, class probability >= {result.threshold.value:.3f}")
        axes.legend(fontsize="small")
        figure.tight_layout()
        path = os.path.join(folder, PLOTS_FOLDER, f"hist_{score}.png")
        _save(figure, path)
        paths.append(path)
    return paths


def plot_roc_curves(
    folder: str,
    result: ProtocolResult,
    id_box_scores: BoxScores,
    ood_box_scores: Mapping[str, BoxScores],
) -> List[str]:
    """Draw, per OOD set with kept boxes, the ROC curves of every score (ID = positive).

    Args:
        folder (str): evaluation folder; the PNGs go to its ``ood_plots`` subfolder.
        result (ProtocolResult): the run's results (threshold, scores, metrics).
        id_box_scores (BoxScores): all boxes of the ID set.
        ood_box_scores (Mapping[str, BoxScores]): all boxes of every OOD set.

    Returns:
        list[str]: the written files.
    """
    os.makedirs(os.path.join(folder, PLOTS_FOLDER), exist_ok=True)
    id_kept = keep_boxes(id_box_scores, result.threshold.value)
    paths = []
    for name, ood_result in result.ood.items():
        if not ood_result.metrics:
            continue
        ood_kept = keep_boxes(ood_box_scores[name], result.threshold.value)
        figure = Figure(figsize=(5, 5))
        axes = figure.add_subplot()
        for score in result.scores:
            fpr, tpr = roc_curve(id_kept[score], ood_kept[score])
            metrics = ood_result.metrics[score]
            axes.plot(
                fpr,
                tpr,
                label=f"{score}: AUROC {metrics['AUROC']:.1f}, FPR95 {metrics['FPR95']:.1f}",
            )
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        axes.axhline(result.tpr, color="grey", linestyle="--", linewidth=1)
        axes.set_xlabel(f"false-positive rate (OOD {name})")
        axes.set_ylabel(f"true-positive rate (ID {result.id_dataset})")
        axes.set_title(f"ROC, {name}")
        axes.legend(fontsize="small", loc="lower right")
        figure.tight_layout()
        path = os.path.join(folder, PLOTS_FOLDER, f"roc_{name}.png")
        _save(figure, path)
        paths.append(path)
    return paths
