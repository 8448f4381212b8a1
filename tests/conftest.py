import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_detection import register_tiny_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_datasets(tmp_path_factory):
    """Names of a tiny train set (24 images) and test set (6 images) of coloured rectangles."""
    root = tmp_path_factory.mktemp("tiny")
    register_tiny_dataset("vos_tiny_train", root / "train", 24, seed=0)
    register_tiny_dataset("vos_tiny_test", root / "test", 6, seed=1)
    return "vos_tiny_train", "vos_tiny_test"
