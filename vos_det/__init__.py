"""vos-det: Virtual Outlier Synthesis (VOS, ICLR 2022) for Detectron2.

``import vos_det`` is all a Detectron2 user needs: it registers ``VOSROIHeads`` (and the RegNet
FPN backbone) so that YAML configs can name them. Then::

    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.merge_from_file(vos_det.model_zoo.get_config_file("VOC-Detection/vos_R_50_FPN.yaml"))
"""

from .known_warnings import ignore_known_warnings

ignore_known_warnings()  # before the imports below import Detectron2

from . import data  # registers the ID and OOD datasets under $DETECTRON2_DATASETS
from . import model_zoo
from .config import add_vos_config, validate_vos_config
from .energy import EnergyUncertaintyHead, weighted_energy
from .evaluation import ood_metrics
from .modeling import VOSOutputLayers, VOSROIHeads  # registers the heads and the backbone
from .queues import ClassFeatureQueues
from .utils import weights as _  # only registration: resolves vos_det://pretrained/<name>
from .virtual_outliers import sample_virtual_outliers

__version__ = "0.1.0"

__all__ = [
    "ClassFeatureQueues",
    "EnergyUncertaintyHead",
    "VOSOutputLayers",
    "VOSROIHeads",
    "add_vos_config",
    "model_zoo",
    "ood_metrics",
    "sample_virtual_outliers",
    "validate_vos_config",
    "weighted_energy",
]
