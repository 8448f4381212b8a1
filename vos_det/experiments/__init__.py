"""The experiment harness of the embedded benchmarks: methods x seeds, trained side by side,
their run records, seed statistics and reports (``make benchmark``, ``make demo``).

* ``parallel_runs``: train and evaluate several configs side by side, one process each;
* ``method_grid``: the methods file, the grid of runs and their records (resumable);
* ``training_log``: the training diagnostics read back from ``metrics.json``;
* ``seed_statistics``, ``seed_report``: means, paired t-intervals, tables and plots;
* ``ood_diagnostics``, ``diagnostics_report``: what an OOD number is made of;
* ``benchmark``, ``benchmark_report``, ``showcase``: what ``tools/benchmark.py`` and
  ``tools/showcase.py`` run, and the benchmark's ``report.md``.

Modules are imported by name: ``seed_statistics`` and ``ood_diagnostics`` work without
Detectron2 (the classifier's tool uses them), the others need it.
"""
