"""Train and evaluate several configs side by side, one process each.

A general utility for comparing configs (methods, seeds) on one machine: each run trains from
scratch with a progress bar, then runs ``VOSTrainer.test``, and logs to its own
``OUTPUT_DIR/log.txt``. On a CPU one training process uses extra cores poorly (Faster R-CNN's
ROIAlign backward and NMS run on one thread), so several single-threaded runs side by side
finish sooner than the same runs one after the other (the README quotes measured times).

Every run trains on ONE torch thread, whatever ``jobs`` is: CPU kernels sum in another order
with another thread count, so a run's numbers would otherwise depend on how many ran beside it
(measured: AP50 10.24 with one thread, 7.93 with two, same config and seed, 100 iterations).
With one thread, the same config and seed give the same weights and metrics bit for bit.
"""

import concurrent.futures
import contextlib
import functools
import logging
import multiprocessing
import os
import sys
import time
from typing import Callable, Dict, Optional

import torch
from detectron2.config import CfgNode
from detectron2.utils.env import seed_all_rng

from ..utils.logger import LOGGER_NAMES, scoped_log_handlers, setup_vos_logger
from ..engine.hooks import ProgressBar
from ..engine.trainer import VOSTrainer

__all__ = ["log_to_file", "train_and_evaluate", "train_and_evaluate_all"]


def _is_terminal_handler(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (
        sys.stdout,
        sys.stderr,
    )


def log_to_file(log_file: str) -> None:
    """Send Detectron2's, fvcore's and vos_det's INFO logs to ``log_file`` (without colour
    codes); the terminal only gets warnings, so progress bars and tables stay readable.

    Called again in the same process (a run of ``tools/benchmark.py --jobs 1`` inside the
    tool's own logging), it adds only the file: a logger that already writes to the terminal
    gets no second terminal handler, so each warning is printed once.
    """
    had_terminal = {
        name: any(_is_terminal_handler(h) for h in logging.getLogger(name).handlers)
        for name in LOGGER_NAMES
    }
    before = {name: set(logging.getLogger(name).handlers) for name in LOGGER_NAMES}
    setup_vos_logger(log_file, rank=0)
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if not _is_terminal_handler(handler):
                continue
            if had_terminal[name] and handler not in before[name]:
                logger.removeHandler(handler)
            else:
                handler.setLevel(logging.WARNING)


def train_and_evaluate(
    cfg: CfgNode,
    description: str,
    bar_position: Optional[int] = 0,
    threads: Optional[int] = None,
    setup: Optional[Callable[[], object]] = None,
) -> float:
    """Train ``cfg`` from scratch with a progress bar, then evaluate it (``VOSTrainer.test``).

    The RNGs are seeded with ``cfg.SEED`` first, so every config with the same seed starts from
    the same state. Printed output of the evaluation (pycocotools' AP table) goes to
    ``{cfg.OUTPUT_DIR}/log.txt``, next to the logs; this run's log handlers are removed when it
    ends, so runs one after another in a process each log to their own file only.

    Args:
        cfg (CfgNode): a complete config (``OUTPUT_DIR`` set).
        description (str): label of the progress bar.
        bar_position (int or None): terminal line of the progress bar (0 = first); None: no
            progress bar.
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
    seed_all_rng(cfg.SEED)
    start = time.perf_counter()
    with scoped_log_handlers(), open(log_file, "a") as printed:
        log_to_file(log_file)
        with contextlib.redirect_stdout(printed):
            _train_and_test(cfg, description, bar_position)
    return time.perf_counter() - start


def _train_and_test(cfg: CfgNode, description: str, bar_position: Optional[int]) -> None:
    """Train ``cfg`` from scratch (VOSTrainer's hooks evaluate it at the end)."""
    trainer = VOSTrainer(cfg)
    if bar_position is not None:
        trainer.register_hooks([ProgressBar(description=description, position=bar_position)])
    trainer.resume_or_load(resume=False)
    trainer.train()


def train_and_evaluate_all(
    cfgs: Dict[str, CfgNode],
    jobs: int,
    setup: Optional[Callable[[], object]] = None,
    on_finished: Optional[Callable[[str, float], None]] = None,
    iteration_bars: bool = True,
) -> Dict[str, float]:
    """:func:`train_and_evaluate` every config, ``jobs`` at a time.

    Each run trains on one torch thread (see the module's docstring). With ``jobs > 1`` each
    run gets a fresh (spawned) process; ``setup`` must then be picklable (e.g. a
    ``functools.partial`` of a module-level function) and register whatever datasets the configs
    name, since a spawned process starts with only the built-in ones. With ``jobs == 1`` the runs
    go one after the other in this process.

    When a run fails, the runs not yet started are cancelled, the ones in progress finish, and
    the error names the failed run and its log.

    Args:
        cfgs (dict[str, CfgNode]): run name -> config.
        jobs (int): runs at the same time (>= 1).
        setup (callable or None): see :func:`train_and_evaluate`.
        on_finished (callable or None): called in this process as ``on_finished(name,
            seconds)`` as soon as a run has finished (in the order they finish), e.g. to record
            it or to advance a progress bar over the runs.
        iteration_bars (bool): show each run's progress bar over its iterations.

    Returns:
        dict[str, float]: run name -> seconds of training and evaluation, in the order of
        ``cfgs``.

    Raises:
        ValueError: if ``jobs < 1``.
        RuntimeError: naming the run, if a run fails (the run's error is its cause).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}.")
    seconds = {}

    def finished(name: str, result: Callable[[], float]) -> None:
        try:
            seconds[name] = result()
        except Exception as e:
            log = os.path.join(cfgs[name].OUTPUT_DIR, "log.txt")
            raise RuntimeError(f"Run {name} failed ({type(e).__name__}: {e}); log: {log}") from e
        if on_finished is not None:
            on_finished(name, seconds[name])

    # Terminal line of each run's iteration bar: one line per concurrent run.
    bars = {name: index % jobs if iteration_bars else None for index, name in enumerate(cfgs)}
    if jobs == 1:
        for name, cfg in cfgs.items():
            finished(name, functools.partial(train_and_evaluate, cfg, name, bars[name], 1, setup))
        return seconds
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {
            pool.submit(train_and_evaluate, cfg, name, bars[name], 1, setup): name
            for name, cfg in cfgs.items()
        }
        try:
            for future in concurrent.futures.as_completed(futures):
                finished(futures[future], future.result)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return {name: seconds[name] for name in cfgs}
