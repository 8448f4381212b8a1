"""The benchmark report's diagnostics: which boxes were kept, and which unseen objects pass.

Per run (:func:`run_diagnostics`, from its saved evaluation and the ground truth) and then per
method over the seeds (:func:`diagnostics_tables`): the share of kept ID boxes that match no
ground-truth box, and per OOD class (the OOD set's annotated objects, plus fragments covering
none) and score, the share of kept boxes that pass as ID (the class's FPR at the protocol's TPR)
and as which ID class (:mod:`~vos_det.experiments.ood_diagnostics`).
"""

from typing import Dict, List, Mapping, Sequence

import numpy as np
from tabulate import tabulate

from .ood_diagnostics import assign_ood_classes, ood_class_breakdown, unmatched_share
from ..evaluation.output_folder import EvaluationRun
from ..evaluation.protocol import keep_boxes

__all__ = ["diagnostics_tables", "run_diagnostics"]


def run_diagnostics(
    run: EvaluationRun,
    id_ground_truth: Mapping[str, np.ndarray],
    ood_ground_truth: Mapping[str, tuple],
    id_class_names: Sequence[str],
) -> dict:
    """The diagnostics of one evaluated run.

    Args:
        run (EvaluationRun): the run's results and per-box arrays.
        id_ground_truth (Mapping[str, np.ndarray]): the ID set's "image_id", "box" arrays.
        ood_ground_truth (Mapping[str, tuple]): OOD set name -> (objects: "image_id", "box",
            "class" arrays; their class names), for the sets whose objects are annotated.
        id_class_names (Sequence[str]): the detector's class names.

    Returns:
        dict: ``{"unmatched_id": percent, "ood": {set: breakdown}}`` with each breakdown as
        :func:`~vos_det.experiments.ood_diagnostics.ood_class_breakdown` returns it.
    """
    result = run.result
    threshold = result.threshold.value
    kept_id = keep_boxes(run.id_box_scores, threshold, result.protocol)
    diagnostics = {"unmatched_id": unmatched_share(kept_id, id_ground_truth), "ood": {}}
    for name, box_scores in run.ood_box_scores.items():
        if name not in ood_ground_truth:
            continue
        objects, class_names = ood_ground_truth[name]
        kept = keep_boxes(box_scores, threshold, result.protocol)
        classes = assign_ood_classes(kept, objects, class_names)
        diagnostics["ood"][name] = ood_class_breakdown(
            kept, classes, result.id_score_thresholds, id_class_names
        )
    return diagnostics


def _average(breakdowns: List[dict]) -> Dict[str, Dict[str, dict]]:
    """The mean over runs of :func:`ood_class_breakdown` results (a class missing from a run,
    e.g. no kept fragment, is averaged over the runs that have it)."""
    averaged: Dict[str, Dict[str, dict]] = {}
    for score in breakdowns[0]:
        classes = list(dict.fromkeys(c for b in breakdowns for c in b[score]))
        averaged[score] = {}
        for name in classes:
            entries = [b[score][name] for b in breakdowns if name in b[score]]
            averaged[score][name] = {
                "boxes": float(np.mean([e["boxes"] for e in entries])),
                "passed": float(np.mean([e["passed"] for e in entries])),
                "as": {k: float(np.mean([e["as"][k] for e in entries])) for k in entries[0]["as"]},
            }
    return averaged


def diagnostics_tables(
    per_run: Mapping[str, List[dict]], ood_set: str, scores: Sequence[str]
) -> str:
    """Markdown tables of the diagnostics, averaged over each method's seeds.

    Args:
        per_run (Mapping[str, list[dict]]): method -> its runs' :func:`run_diagnostics`.
        ood_set (str): the OOD set the tables describe.
        scores (Sequence[str]): the scores whose "passes as" table is shown.

    Returns:
        str: up to three tables: per method the unmatched ID share and the kept boxes per OOD
        class; per method and score the FPR on every OOD class; for ``scores``, the ID classes
        the passing boxes take. "" when no run has annotated objects on ``ood_set``.
    """
    kept_rows, fpr_rows, as_rows = [], [], []
    classes: List[str] = []
    id_classes: List[str] = []
    for method, runs in per_run.items():
        breakdowns = [run["ood"][ood_set] for run in runs if ood_set in run["ood"]]
        if not breakdowns:
            continue
        averaged = _average(breakdowns)
        per_class = next(iter(averaged.values()))
        classes = list(dict.fromkeys(classes + list(per_class)))
        id_classes = list(next(iter(per_class.values()))["as"])
        unmatched = float(np.mean([run["unmatched_id"] for run in runs]))
        kept_rows.append((method, unmatched, per_class))
        for score, entries in averaged.items():
            fpr_rows.append([method, score] + [_cell(entries, c, "passed") for c in classes])
            if score in scores:
                as_rows += [
                    [method, score, name] + [f"{entry['as'][k]:.1f}" for k in id_classes]
                    for name, entry in entries.items()
                ]
    if not kept_rows:
        return ""
    tables = [
        tabulate(
            [
                [method, f"{unmatched:.1f}"] + [_cell(per_class, c, "boxes", 0) for c in classes]
                for method, unmatched, per_class in kept_rows
            ],
            ["method", "kept ID boxes matching no object (%)"]
            + [f"kept OOD boxes: {c}" for c in classes],
            tablefmt="pipe",
            disable_numparse=True,
        ),
        tabulate(fpr_rows, ["method", "score"] + [f"FPR: {c}" for c in classes], tablefmt="pipe", disable_numparse=True),
    ]
    if as_rows:
        header = ["method", "score", "OOD class"] + [f"passes as {c} (%)" for c in id_classes]
        tables.append(tabulate(as_rows, header, tablefmt="pipe", disable_numparse=True))
    return "\n\n".join(tables)


def _cell(entries: Mapping[str, dict], name: str, field: str, digits: int = 1) -> str:
    """One class's averaged value, "-" when the method kept no box of that class."""
    return f"{entries[name][field]:.{digits}f}" if name in entries else "-"
