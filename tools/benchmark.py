#!/usr/bin/env python3
"""Methods x training seeds on the synthetic benchmark (``make benchmark``); see
:mod:`vos_det.experiments.benchmark` or ``--help`` for the options.

    python tools/benchmark.py                      # every method of the methods file, seeds 1-3
    python tools/benchmark.py --data-seed 1 --output output/benchmark_val   # a validation draw
"""

import sys

import vos_det  # noqa: F401  first: it silences known warnings of the imports below
from vos_det.experiments.benchmark import main

if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, FileExistsError) as e:  # the message says it all
        sys.exit(f"benchmark.py: error: {e}")
    except KeyboardInterrupt:
        sys.exit(
            "benchmark.py: interrupted. Finished runs are saved in their folders; the same "
            "command resumes (an interrupted run is trained again from its start)."
        )
