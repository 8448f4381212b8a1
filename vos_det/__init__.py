"""vos-det: Virtual Outlier Synthesis for Detectron2.

Importing this package is all a Detectron2 user needs to make the VOS names resolvable from YAML.
"""
__version__ = "0.1.0"
