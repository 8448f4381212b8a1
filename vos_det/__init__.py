"""vos-det: Virtual Outlier Synthesis (VOS, ICLR 2022) for Detectron2.

``import vos_det`` is all a Detectron2 user needs: it registers ``VOSROIHeads`` (and the RegNet
FPN backbone) so that YAML configs can name them. Then::

    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.merge_from_file(vos_det.model_zoo.get_config_file("VOC-Detection/vos_R_50_FPN.yaml"))

Without Detectron2 the package still imports: its Detectron2-free core (:mod:`vos_det.core`),
VOS for classifiers (:mod:`vos_det.classification`) and the pretraining
(:mod:`vos_det.pretraining`) work with plain PyTorch, and the Detectron2 names say what to
install when they are used.
"""

from .core.known_warnings import ignore_known_warnings

ignore_known_warnings()  # before the imports below import Detectron2

from .core.energy import EnergyUncertaintyHead, weighted_energy
from .core.ood_metrics import ood_metrics
from .core.queues import ClassFeatureQueues
from .core.virtual_outliers import sample_virtual_outliers

__version__ = "0.1.0"

#: The names that need Detectron2.
DETECTRON2_NAMES = (
    "VOSOutputLayers",
    "VOSROIHeads",
    "add_vos_config",
    "model_zoo",
    "validate_vos_config",
)

try:
    import detectron2  # noqa: F401
except ImportError as error:  # the Detectron2 names explain themselves when used (__getattr__)
    _DETECTRON2_ERROR = error
else:
    _DETECTRON2_ERROR = None
    from . import data  # registers the ID and OOD datasets under $DETECTRON2_DATASETS
    from . import model_zoo
    from .config import add_vos_config
    from .modeling import VOSOutputLayers, VOSROIHeads  # registers the heads and the backbone
    from .modeling.config_checks import validate_vos_config
    from .utils import weights as _  # only registration: resolves vos_det://pretrained/<name>


def __getattr__(name: str):
    if name in DETECTRON2_NAMES and _DETECTRON2_ERROR is not None:
        raise ImportError(
            f"vos_det.{name} needs Detectron2, which this Python cannot import "
            f"({_DETECTRON2_ERROR}). Install it with `make setup` or "
            "`python tools/install_detectron2.py`; vos_det.core, vos_det.classification and "
            "vos_det.pretraining work without it."
        )
    raise AttributeError(f"module 'vos_det' has no attribute {name!r}")


__all__ = [
    "ClassFeatureQueues",
    "EnergyUncertaintyHead",
    *DETECTRON2_NAMES,
    "ood_metrics",
    "sample_virtual_outliers",
    "weighted_energy",
]
