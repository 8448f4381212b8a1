"""What a finished run's training log (``OUTPUT_DIR/metrics.json``) says about its last steps:
the uncertainty heads' diagnostics, to tell whether they learnt anything."""

import json
import os
from typing import Dict, Sequence

import numpy as np

__all__ = ["TRAINING_DIAGNOSTICS", "final_training_metrics"]

#: The diagnostics the box predictor logs (vos_det.modeling.uncertainty_metrics), with a label.
TRAINING_DIAGNOSTICS = {
    "vos/uncertainty_loss": "energy head loss",
    "vos/uncertainty_mix_entropy": "its chance level",
    "vos/uncertainty_auroc": "energy head AUROC (real vs virtual)",
    "vos/id_energy": "ID energy",
    "vos/outlier_energy": "outlier energy",
    "vos/feature_head_loss": "feature head loss",
    "vos/feature_head_auroc": "feature head AUROC (real vs virtual)",
    "vos/singular_value_penalty": "singular-value penalty",
}


def final_training_metrics(
    output_dir: str, names: Sequence[str], last_iterations: int = 100
) -> Dict[str, float]:
    """The mean of each named metric over the ``metrics.json`` records of the last
    ``last_iterations`` training iterations (Detectron2 writes one record every 20 iterations,
    each the median of its window).

    Args:
        output_dir (str): the run's ``OUTPUT_DIR``.
        names (Sequence[str]): metric names, e.g. keys of :data:`TRAINING_DIAGNOSTICS`.
        last_iterations (int): how far back from the last record's iteration to average.

    Returns:
        dict[str, float]: name -> mean, for the names the log holds in that span.

    Raises:
        FileNotFoundError: naming the file, when the run has no ``metrics.json``.
    """
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: the run has no training log")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    records = [record for record in records if "iteration" in record]
    if not records:
        return {}
    last = max(record["iteration"] for record in records)
    recent = [record for record in records if record["iteration"] > last - last_iterations]
    means = {}
    for name in names:
        values = [record[name] for record in recent if name in record]
        if values:
            means[name] = float(np.mean(values))
    return means
