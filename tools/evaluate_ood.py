#!/usr/bin/env python3
"""Recompute the OOD table from saved per-box scores, for one run or several side by side.

Every run is an evaluation folder written by ``tools/train_net.py --eval-only`` (or by the
evaluation after training): ``OUTPUT_DIR/inference`` with ``ood_results.json`` (ID set,
protocol, threshold, TPR, scores, ID AP), ``scores_<dataset>.npz`` for the ID set and every
OOD or mixed set, and ``ground_truth_<dataset>.npz`` for every mixed (open-set) set, whose
open-set table is recomputed too. Each run is recomputed with its saved protocol unless ``--protocol`` names another. No
model and no dataset is loaded.

    python tools/evaluate_ood.py --run vanilla=output/vanilla/inference \\
        --run vos=output/vos/inference [--threshold 0.5] [--protocol strict] [--json table.json]
"""

import argparse
import json
import logging
import os
import sys
from typing import Dict, List, Optional, Tuple

from vos_det.evaluation import EvaluationFolder, ProtocolResult, format_table
from vos_det.evaluation.box_matching import ScoreThreshold
from vos_det.evaluation.protocol import PROTOCOLS, evaluate_ood_protocol

logger = logging.getLogger("vos_det.evaluate_ood")


def parse_run(text: str) -> Tuple[str, str]:
    """Parse ``NAME=DIR`` into (name, folder).

    Args:
        text (str): the ``--run`` value.

    Returns:
        tuple[str, str]: the run name and its evaluation folder.
    """
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(
            f"--run expects NAME=DIR (e.g. vos=output/vos/inference), got {text!r}"
        )
    return name, folder


def recompute_run(
    folder: str, threshold: Optional[float] = None, protocol: Optional[str] = None
) -> ProtocolResult:
    """Recompute a run's OOD results from its evaluation folder.

    A threshold the run derived on the ID ground truth cannot be derived again here (no dataset
    is loaded): with another protocol it is kept, and a warning says so.

    Args:
        folder (str): folder holding ``ood_results.json`` and the ``scores_<dataset>.npz`` files.
        threshold (float or None): class probability threshold replacing the run's own.
        protocol (str or None): protocol replacing the run's own (one of ``PROTOCOLS``).

    Returns:
        ProtocolResult: the recomputed results (the ID AP is the saved one).
    """
    run = EvaluationFolder(folder).read_run()
    saved = run.result
    protocol = protocol or saved.protocol
    if threshold is not None:
        saved.threshold = ScoreThreshold(threshold, "fixed")
    elif protocol != saved.protocol and saved.threshold.source != "fixed":
        logger.warning(
            "%s: the threshold %.4f was derived under the %s protocol (%s) and is kept, as "
            "deriving it again needs the ID ground truth. For the %s protocol's own threshold "
            "evaluate the model with VOS.EVAL.PROTOCOL %s, or pass --threshold.",
            folder,
            saved.threshold.value,
            saved.protocol,
            saved.threshold.source,
            protocol,
            protocol,
        )
    return evaluate_ood_protocol(
        saved.id_dataset,
        run.id_box_scores,
        run.ood_box_scores,
        saved.threshold,
        saved.scores,
        saved.tpr,
        saved.id_metrics,
        protocol,
        run.open_sets,
    )


def build_parser() -> argparse.ArgumentParser:
    """Returns: the command-line parser (``--run``, ``--threshold``, ``--protocol``, ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        type=parse_run,
        action="append",
        required=True,
        metavar="NAME=DIR",
        help="a run's name and its OUTPUT_DIR/inference folder; repeat to compare runs",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="class probability a box needs to be kept, for every run (default: each run's own)",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="evaluation protocol for every run (default: each run's own, see VOS.EVAL.PROTOCOL)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the results of every run here")
    return parser


def main(argv: Optional[List[str]] = None) -> Dict[str, ProtocolResult]:
    """Print the table of the runs given on the command line (and write it with ``--json``).

    Args:
        argv (list[str] or None): the arguments; None = ``sys.argv[1:]``.

    Returns:
        dict[str, ProtocolResult]: run name -> recomputed results.
    """
    args = build_parser().parse_args(argv)
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise SystemExit(f"--threshold={args.threshold} must be a class probability in [0, 1].")
    names = [name for name, _ in args.run]
    if len(set(names)) != len(names):
        raise SystemExit(f"Run names must differ, got {names}.")
    results = {
        name: recompute_run(folder, args.threshold, args.protocol) for name, folder in args.run
    }
    print(format_table(results))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {name: result.to_dict() for name, result in results.items()},
                f,
                indent=2,
                allow_nan=False,
            )
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (FileNotFoundError, ValueError, KeyError) as e:
        sys.exit(f"evaluate_ood: {e}")
    except KeyboardInterrupt:
        sys.exit("evaluate_ood: interrupted; nothing was written.")
