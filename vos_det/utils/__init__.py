"""Utilities, one module each (imported by name; this package imports nothing itself, so that
the Detectron2-free ones, e.g. ``seeds``, work without Detectron2): ``weights`` (MODEL.WEIGHTS:
checks, fitting loads, the pretrained-weights address), ``logger`` (the tools' logs),
``visualize`` (drawing open-set detections), ``image_files`` and ``detection_records``
(inference on image files), ``seeds`` (the ``--seeds`` option)."""
