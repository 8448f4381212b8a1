"""Train and evaluate several configs side by side, one process each.

A general utility for comparing configs (methods, seeds) on one machine: each run trains from
scratch with a progress bar, then runs ``VOSTrainer.test``, and logs to its own
``OUTPUT_DIR/log.txt``. On a CPU one training process uses extra cores poorly (Faster R-CNN's
ROIAlign backward and NMS run on one thread), so several single-threaded runs side by side
finish sooner than the same runs one after the other (the README quotes measured times).
"""

import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import sys
import time
from typing import Callable, Dict, Optional

import torch
from detectron2.config import CfgNode
from detectron2.utils.env import seed_all_rng

from ..utils.logger import LOGGER_NAMES, setup_vos_logger
from .hooks import ProgressBar
from .trainer import VOSTrainer

__all__ = ["log_to_file", "train_and_evaluate", "train_and_evaluate_all"]


def log_to_file(log_file: str) -> None:
    """Send Detectron2's, fvcore's and vos_det's INFO logs to ``log_file`` (without colour
    codes); the terminal only gets warnings, so progress bars and tables stay readable."""
    setup_vos_logger(log_file, rank=0)
    for name in LOGGER_NAMES:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (
                sys.stdout,
                sys.stderr,
            ):
                handler.setLevel(logging.WARNING)


def train_and_evaluate(
    cfg: CfgNode,
    description: str,
    bar_position: int = 0,
    threads: Optional[int] = None,
    setup: Optional[Callable[[], object]] = None,
) -> float:
    """Train ``cfg`` from scratch with a progress bar, then evaluate it (``VOSTrainer.test``).

    The RNGs are seeded with ``cfg.SEED`` first, so every config with the same seed starts from
    the same state. Printed output of the evaluation (pycocotools' AP table) goes to
    ``{cfg.OUTPUT_DIR}/log.txt``, next to the logs.

    Args:
        cfg (CfgNode): a complete config (``OUTPUT_DIR`` set).
        description (str): label of the progress bar.
        bar_position (int): terminal line of the progress bar (0 = first).
        threads (int or None): torch intra-op threads for this process; None leaves it.
        setup (callable or None): called first, e.g. to register datasets in a fresh process.

    Returns:
        float: wall-clock seconds of training and evaluation.
    """
    if setup is not None:
        setup()
    if threads is not None:
        torch.set_num_threads(threads)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    log_file = os.path.join(cfg.OUTPUT_DIR, "log.txt")
    log_to_file(log_file)
    seed_all_rng(cfg.SEED)
    start = time.perf_counter()
    with open(log_file, "a") as printed, contextlib.redirect_stdout(printed):
        trainer = VOSTrainer(cfg)
        trainer.register_hooks([ProgressBar(description=description, position=bar_position)])
        trainer.resume_or_load(resume=False)
        trainer.train()
    return time.perf_counter() - start


def train_and_evaluate_all(
    cfgs: Dict[str, CfgNode], jobs: int, setup: Optional[Callable[[], object]] = None
) -> Dict[str, float]:
    """:func:`train_and_evaluate` every config, ``jobs`` at a time.

    With ``jobs > 1`` each run gets a fresh (spawned) process with
    ``max(1, os.cpu_count() // jobs)`` torch threads; ``setup`` must then be picklable (e.g. a
    ``functools.partial`` of a module-level function) and register whatever datasets the configs
    name, since a spawned process starts with only the built-in ones. With ``jobs == 1`` the runs
    go one after the other in this process.

    Args:
        cfgs (dict[str, CfgNode]): run name -> config.
        jobs (int): runs at the same time (>= 1).
        setup (callable or None): see :func:`train_and_evaluate`.

    Returns:
        dict[str, float]: run name -> seconds of training and evaluation.

    Raises:
        ValueError: if ``jobs < 1``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}.")
    if jobs == 1:
        return {name: train_and_evaluate(cfg, name, setup=setup) for name, cfg in cfgs.items()}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {
            name: pool.submit(train_and_evaluate, cfg, name, index % jobs, threads, setup)
            for index, (name, cfg) in enumerate(cfgs.items())
        }
        return {name: future.result() for name, future in futures.items()}
