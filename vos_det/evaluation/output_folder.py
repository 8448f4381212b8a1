"""An evaluation output folder: its layout, its one writer and its one reader.

Layout (``OUTPUT_DIR/inference`` after :class:`~vos_det.evaluation.OODEvaluation`)::

    scores_<dataset>.npz          per-box arrays of every test set (``BoxScores``)
    ground_truth_<dataset>.npz    the ground truth of every mixed set (``OpenSetGroundTruth``)
    ood_results.json              the protocol's results (``ProtocolResult.to_dict``)
    ood_plots/hist_<score>.png    score histograms, ID vs every OOD set (kept boxes)
    ood_plots/roc_<dataset>.png   ROC curves of every score, ID vs one OOD set

Files are written atomically (a temporary file in the same folder, then a rename), so a full
disk or an interrupted run never leaves a truncated file under the final name.
"""

import contextlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np

from ..core.files import atomic_write
from .protocol import ProtocolResult
from .score_collector import BoxScores

__all__ = ["EvaluationFolder", "EvaluationRun"]

RESULTS_FILE = "ood_results.json"
PLOTS_FOLDER = "ood_plots"


@dataclass
class EvaluationRun:
    """What an evaluation folder holds about one run.

    Attributes:
        result (ProtocolResult): ``ood_results.json``.
        id_box_scores (BoxScores): the ID set's per-box arrays.
        ood_box_scores (dict[str, BoxScores]): every OOD set's per-box arrays, in result order.
        open_sets (dict[str, tuple]): every mixed set's (per-box arrays, ground truth), in
            result order.
    """

    result: ProtocolResult
    id_box_scores: BoxScores
    ood_box_scores: Dict[str, BoxScores]
    open_sets: Dict[str, Tuple[BoxScores, Dict[str, np.ndarray]]] = field(default_factory=dict)


class EvaluationFolder:
    """The files of one evaluation, e.g. ``OUTPUT_DIR/inference``."""

    def __init__(self, path: str):
        """
        Args:
            path (str): the folder (created when something is written).
        """
        self.path = path

    @property
    def results_file(self) -> str:
        """The path of ``ood_results.json``."""
        return os.path.join(self.path, RESULTS_FILE)

    @property
    def plots_folder(self) -> str:
        """The folder of the PNG plots."""
        return os.path.join(self.path, PLOTS_FOLDER)

    def scores_file(self, dataset: str) -> str:
        """Returns: the path of a dataset's per-box arrays."""
        return os.path.join(self.path, f"scores_{dataset}.npz")

    def save_box_scores(self, dataset: str, box_scores: BoxScores) -> None:
        """Write a dataset's per-box arrays (``.npz``, no pickling).

        Args:
            dataset (str): the dataset's name.
            box_scores (BoxScores): its arrays.
        """
        with atomic_write(self.scores_file(dataset), "wb") as f:
            np.savez(f, **box_scores)

    def load_box_scores(self, dataset: str) -> BoxScores:
        """Read a dataset's per-box arrays written by :meth:`save_box_scores`.

        Raises:
            FileNotFoundError: if the file does not exist.
            ValueError: naming the file, if it is not a readable score file, or naming the array
                whose length differs from the boxes'.
        """
        path = self.scores_file(dataset)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Score file not found: {path}. VOSTrainer.test (tools/train_net.py --eval-only) "
                "writes one per test set into OUTPUT_DIR/inference."
            )
        return _check_lengths(path, _read_npz(path, "score file"))

    def ground_truth_file(self, dataset: str) -> str:
        """Returns: the path of a mixed set's ground truth."""
        return os.path.join(self.path, f"ground_truth_{dataset}.npz")

    def save_ground_truth(self, dataset: str, ground_truth: Dict[str, np.ndarray]) -> None:
        """Write a mixed set's ground truth (``OpenSetGroundTruth``, ``.npz``), so that its
        open-set metrics can be recomputed without the dataset."""
        with atomic_write(self.ground_truth_file(dataset), "wb") as f:
            np.savez(f, **ground_truth)

    def load_ground_truth(self, dataset: str) -> Dict[str, np.ndarray]:
        """Read a mixed set's ground truth written by :meth:`save_ground_truth`.

        Raises:
            FileNotFoundError: if the file does not exist.
            ValueError: naming the file, if it is unreadable or lacks an array, or naming the
                array whose length differs from the objects'.
        """
        path = self.ground_truth_file(dataset)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Ground-truth file not found: {path}. VOSTrainer.test writes one per mixed "
                "(open-set) test set into OUTPUT_DIR/inference."
            )
        arrays = _read_npz(path, "ground-truth file")
        missing = [key for key in _GROUND_TRUTH_KEYS if key not in arrays]
        if missing:
            raise ValueError(f"{path} lacks the arrays {missing}; evaluate the model again.")
        _check_lengths(path, {key: arrays[key] for key in ("image_id", "box", "class")})
        return arrays

    def clear_results(self) -> None:
        """Remove an earlier ``ood_results.json``, which must not be paired with new scores."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.results_file)

    def write_results(self, result: ProtocolResult) -> None:
        """Write ``ood_results.json`` (strict JSON: no NaN)."""
        with atomic_write(self.results_file) as f:
            json.dump(result.to_dict(), f, indent=2, allow_nan=False)

    def read_results(self) -> ProtocolResult:
        """Read ``ood_results.json``.

        Raises:
            FileNotFoundError: if the file does not exist.
            ValueError: if it is not valid JSON or not an OOD results file.
        """
        path = self.results_file
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found. VOSTrainer.test (tools/train_net.py --eval-only) writes it "
                "into OUTPUT_DIR/inference when DATASETS.TEST holds an ID set and OOD sets."
            )
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON ({e}).") from e
        return ProtocolResult.from_dict(data)

    def read_run(self) -> EvaluationRun:
        """Read the results and the per-box arrays of the ID set and of every OOD set, and the
        per-box arrays and ground truth of every mixed set."""
        result = self.read_results()
        return EvaluationRun(
            result=result,
            id_box_scores=self.load_box_scores(result.id_dataset),
            ood_box_scores={name: self.load_box_scores(name) for name in result.ood},
            open_sets={
                name: (self.load_box_scores(name), self.load_ground_truth(name))
                for name in result.open_set
            },
        )


#: The arrays of a mixed set's ground-truth file.
_GROUND_TRUTH_KEYS = ("image_id", "box", "class", "images", "num_known")


def _read_npz(path: str, kind: str) -> Dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles).

    Raises:
        ValueError: naming the file and its ``kind``, if it cannot be read.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"{path} is not a readable {kind} ({e}); it is corrupt or truncated. "
            "Evaluate the model again (tools/train_net.py --eval-only) to rewrite it."
        ) from e


def _check_lengths(path: str, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``arrays``, checked to have one entry per box (the length of "box", or of the first array
    without one).

    Raises:
        ValueError: naming the array whose length differs.
    """
    reference = "box" if "box" in arrays else next(iter(arrays), None)
    boxes = len(arrays[reference]) if reference is not None else 0
    for key, array in arrays.items():
        if array.ndim == 0 or len(array) != boxes:
            raise ValueError(
                f"{path}: the array {key!r} has {array.shape} entries but the file holds "
                f"{boxes} boxes; the file was altered. Evaluate the model again to rewrite it."
            )
    return arrays
