"""Logging for the tools: vos_det's messages on the terminal and in ``OUTPUT_DIR/log.txt``."""

import contextlib
import logging
import re
from typing import Iterator

from detectron2.utils.logger import setup_logger

__all__ = ["scoped_log_handlers", "setup_vos_logger"]

# Loggers that `setup_vos_logger` (and Detectron2's `default_setup`) give handlers.
LOGGER_NAMES = ("detectron2", "fvcore", "vos_det")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _PlainFormatter(logging.Formatter):
    """Formats like the wrapped formatter, with the ANSI escape codes (colours) removed."""

    def __init__(self, formatter: logging.Formatter):
        super().__init__()
        self.formatter = formatter

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI_ESCAPE.sub("", self.formatter.format(record))


def _writes_to_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    try:
        return stream is not None and hasattr(stream, "isatty") and stream.isatty()
    except ValueError:  # a closed stream (e.g. one a test harness replaced) is no terminal
        return False


def _strip_colours_off_terminal() -> None:
    """Remove ANSI colour codes from what the loggers of ``LOGGER_NAMES`` write to files and
    pipes (``log.txt``, redirected output); terminals keep their colours.

    Detectron2 colours its console format and, with pygments installed, the config it logs in
    ``default_setup``; the latter reaches ``log.txt`` as escape codes otherwise.
    """
    for name in LOGGER_NAMES:
        for handler in logging.getLogger(name).handlers:
            if handler.formatter is None or isinstance(handler.formatter, _PlainFormatter):
                continue
            if not _writes_to_terminal(handler):
                handler.setFormatter(_PlainFormatter(handler.formatter))


def setup_vos_logger(output_dir: str, rank: int) -> logging.Logger:
    """Send Detectron2's, fvcore's and vos_det's logs (OOD tables, warnings) to the terminal and
    ``output_dir/log.txt``, without colour codes in the file.

    Call it before ``detectron2.engine.default_setup``: that calls ``setup_logger`` with the
    same arguments as here, and ``setup_logger`` (cached) then returns these loggers unchanged,
    so the config that ``default_setup`` logs, coloured by pygments, reaches ``log.txt`` plain.

    Args:
        output_dir (str): ``OUTPUT_DIR``; the log goes to its ``log.txt`` (``log.txt.rank<r>``
            for ranks r > 0).
        rank (int): the process's rank; only rank 0 logs to the terminal.

    Returns:
        logging.Logger: the ``vos_det`` logger.
    """
    setup_logger(output_dir, distributed_rank=rank, name="fvcore")  # as in default_setup
    setup_logger(output_dir, distributed_rank=rank)
    logger = setup_logger(output_dir, distributed_rank=rank, name="vos_det")
    _strip_colours_off_terminal()
    return logger


@contextlib.contextmanager
def scoped_log_handlers() -> Iterator[None]:
    """Within the block, handlers may be added to the loggers of ``LOGGER_NAMES`` (e.g. by
    :func:`setup_vos_logger` for one run's ``log.txt``); on exit they are removed again and
    Detectron2's cached ``setup_logger`` calls forgotten.

    For a process that runs one config after another (``tools/benchmark.py --jobs 1``, a worker
    of a process pool): without it the handlers of the earlier runs stay attached, and a later
    run's lines also land in the earlier runs' ``log.txt``.
    """
    before = {name: set(logging.getLogger(name).handlers) for name in LOGGER_NAMES}
    try:
        yield
    finally:
        for name in LOGGER_NAMES:
            logger = logging.getLogger(name)
            for handler in set(logger.handlers) - before[name]:
                handler.flush()
                logger.removeHandler(handler)
        setup_logger.cache_clear()
