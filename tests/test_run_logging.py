"""Logging of side-by-side runs: each run's log file, warnings once on the terminal."""

import logging

from detectron2.utils.logger import setup_logger

from vos_det.experiments.parallel_runs import log_to_file
from vos_det.utils.logger import LOGGER_NAMES, scoped_log_handlers


def test_a_run_inside_the_tools_logging_prints_each_warning_once(tmp_path, capsys, monkeypatch):
    """``benchmark.py --jobs 1`` logs to its own log.txt and each run to the run's: a warning
    of a run reaches the terminal once and the run's file once."""
    for name in LOGGER_NAMES:  # as in a fresh process: no handlers of earlier tests
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
    setup_logger.cache_clear()
    with scoped_log_handlers():
        log_to_file(str(tmp_path / "tool" / "log.txt"))
        with scoped_log_handlers():
            log_to_file(str(tmp_path / "run" / "log.txt"))
            logging.getLogger("fvcore.common.checkpoint").warning("weights do not fit")
            logging.getLogger("detectron2.engine").info("iteration 7")
            for handler in logging.getLogger("fvcore").handlers:
                handler.flush()
            printed = capsys.readouterr()
        logging.getLogger("vos_det.tool").warning("after the run")
        printed_after = capsys.readouterr()
    terminal = printed.out + printed.err
    assert terminal.count("weights do not fit") == 1
    assert "iteration 7" not in terminal  # INFO goes to the files only
    run_log = (tmp_path / "run" / "log.txt").read_text()
    assert run_log.count("weights do not fit") == 1 and "iteration 7" in run_log
    # The run's handlers are gone after it; the tool's terminal handler is still there.
    assert (printed_after.out + printed_after.err).count("after the run") == 1
    assert "after the run" not in run_log
