"""The Detectron2-free core of vos_det (plain PyTorch, NumPy and OpenCV).

The method: per-class feature queues (``queues``), exact virtual-outlier sampling
(``virtual_outliers``, ``outlier_synthesis``), the energy and feature-space uncertainty heads
(``energy``, ``feature_head``), FEVER-OOD's penalty (``spectral_penalty``), the class
statistics of the queues (``feature_statistics``, with the shrinkage estimators of
``covariance``) and the score registry (``scores``); its
metrics (``ood_metrics``, ``training_diagnostics``); and what the benchmarks are drawn with
(``shape_scenes``) and cached in (``cached_folder``, ``files``). Nothing here imports
Detectron2 (tests/test_package.py checks it): VOS for classifiers and the pretraining build on
this package alone.
"""
