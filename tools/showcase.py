#!/usr/bin/env python3
"""The embedded benchmark end to end (``make demo``): a vanilla and a VOS detector trained side
by side, evaluated, tabled and drawn; see :mod:`vos_det.experiments.showcase` or ``--help``.

    python tools/showcase.py                    # the full demo (its time: see the README)
    python tools/showcase.py --quick            # a shorter schedule for a first look
"""

import sys

import vos_det  # noqa: F401  first: it silences known warnings of the imports below
from vos_det.experiments.showcase import main

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(
            "showcase.py: interrupted. The demo does not resume: the same command trains both "
            "models again (the pretrained weights and the generated data stay cached)."
        )
