"""vos-det: Virtual Outlier Synthesis (VOS, ICLR 2022) as a Detectron2 extension.

torch, torchvision and detectron2 are not declared here: users usually bring their own, and
`make setup` (or `tools/install_detectron2.py`) installs them when they are missing.
"""
from setuptools import find_packages, setup

setup(
    name="vos_det",
    version="0.1.0",
    description="Open-set object detection with Virtual Outlier Synthesis for Detectron2",
    python_requires=">=3.10",
    packages=find_packages(include=["vos_det", "vos_det.*"]),
    package_data={"vos_det": ["configs/**/*.yaml"]},
    install_requires=[
        "fvcore>=0.1.5",
        "pycocotools>=2.0.2",
        "numpy",
        "opencv-python-headless",
        "matplotlib",
        "pillow",
        "scipy",
        "tabulate",
        "tqdm",
    ],
    extras_require={"test": ["pytest>=7", "scikit-learn"]},
)
