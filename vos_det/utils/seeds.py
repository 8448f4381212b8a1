"""The ``--seeds`` option of the tools that train over several seeds."""

import argparse
from typing import List

__all__ = ["add_seeds_argument", "expand_seeds"]


def add_seeds_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """Add ``--seeds``: ``N`` for seeds 1..N (default 3), or several seeds.

    Args:
        parser (argparse.ArgumentParser): the tool's parser.
        note (str): appended to the help text, e.g. "(-- before overrides)".
    """
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[3],
        help=f"training seeds: N for 1..N (default 3), or several seeds {note}".rstrip(),
    )


def expand_seeds(parser: argparse.ArgumentParser, seeds: List[int]) -> List[int]:
    """The seeds ``--seeds`` means (``[N]`` -> 1..N); exits through ``parser.error`` naming
    the problem for N < 1 or seeds that repeat or are negative."""
    if len(seeds) == 1:
        if seeds[0] < 1:
            parser.error(f"--seeds N needs N >= 1, got {seeds[0]}")
        return list(range(1, seeds[0] + 1))
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        parser.error(f"--seeds must be distinct seeds >= 0, got {seeds}")
    return seeds
