"""Configs shipped with the package, found the way ``detectron2.model_zoo`` finds its own."""

from pathlib import Path

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"


def get_config_file(config_path: str) -> str:
    """Absolute path of a shipped config, e.g. ``"VOC-Detection/vos_R_50_FPN.yaml"``."""
    path = CONFIG_ROOT / config_path
    if not path.is_file():
        available = sorted(str(p.relative_to(CONFIG_ROOT)) for p in CONFIG_ROOT.rglob("*.yaml"))
        raise FileNotFoundError(
            f"{config_path} is not a config shipped with vos_det; available: {', '.join(available)}"
        )
    return str(path)
